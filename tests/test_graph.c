/*
 * test_graph.c — weir_graph end to end: building, validating, expanding and
 * running graphs of small custom stages defined below.
 *
 * Stages (all argument-driven through their argument tables):
 *   rows_src     K batches of M rows (id, key = "k<id % mod>"), or endless
 *   bytes_src    deterministic pseudo-random chunks of bytes
 *   jitter       parallel pass-through (rows or bytes) that sleeps 0-3 ms per
 *                batch depending on its content, and records which replica
 *                saw which batch, id and key
 *   keyed        the same, flagged KEYED (needs a partition to replicate)
 *   keyed_sink   a replicated KEYED recording sink
 *   vary         parallel: 0, 1 or 3 outputs per input (by first id % 3)
 *   capture      sink: every id in arrival order, into one of NSLOT slots
 *   head         forwards the first `rows` rows, then WEIR_DONE
 *   fail         parallel pass-through that fails on the batch holding id `at`
 *   stopper      parallel pass-through that returns WEIR_DONE after id `at`
 *   tailer       jitter, plus one row per replica emitted from finish()
 *   serial       a pass-through that is not parallel-safe
 *   bytes_cat    sink: concatenates the bytes it receives
 *   bytes_count  sink: counts bytes and batches
 *   probe        sink that records its resolved arguments
 *   needy        sink with a required argument
 *
 * What the runtime promises and is checked here: ordered collection restores
 * source order whatever the replicas do; every batch/row reaches exactly one
 * replica; a key always reaches the same replica; broadcast gives every
 * consumer everything; merge/concat; early stop is success; the first error
 * and an external cancel end the run with the right code and message;
 * validation errors; stage arguments; reruns; both launchers; describe.
 *
 * No timing assertions: sleeps only shuffle the replicas' completion order,
 * and .timeout turns a hang into a failure.
 */
#include <criterion/criterion.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "weir.h"

#define MAXID (1u << 18) /* ids recorded (an endless source goes beyond) */
#define NSLOT 4
#define MAXREP 64
#define MAXKEY 64
#define MAXBATCH 8192

#define GTEST(name)                                                                  \
    Test(graph, name, .timeout = 20, .init = reset_globals, .fini = release_tracked)

/* ---- test-global records, written by stages on worker threads ---------------- */

typedef struct batch_rec {
    int64_t first; /* first id (rows), -1 for bytes */
    int replica;
    uint32_t nrows;
} batch_rec;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static struct {
    /* jitter / keyed stages */
    unsigned id_seen[MAXID];
    int id_replica[MAXID];
    uint64_t key_mask[MAXKEY]; /* bit r: replica r saw this key */
    uint64_t replica_batches[MAXREP];
    batch_rec batches[MAXBATCH];
    size_t nbatches;
    uint64_t rec_bytes;
    /* capture sinks */
    int64_t ids[NSLOT][MAXID];
    size_t nids[NSLOT];
    uint64_t rows[NSLOT];
    int capture_finished[NSLOT];
    uint32_t brows[NSLOT][MAXBATCH]; /* rows of each batch, in arrival order */
    bool bschema[NSLOT][MAXBATCH];   /* it had a schema with an id column */
    size_t nb[NSLOT];
    /* bytes sinks */
    unsigned char *bytes[NSLOT];
    size_t nbytes[NSLOT], capbytes[NSLOT];
    uint64_t bytecount[NSLOT], bytebatches[NSLOT];
    /* probe */
    int probe_opened;
    int64_t p_int;
    double p_float, p_float2;
    bool p_bool;
    char p_str[64];
    char p_list[8][16];
    size_t p_nlist;
    bool p_given[6];
    int p_replicas;
} G;

static void reset_globals(void)
{
    pthread_mutex_lock(&mu);
    for (int i = 0; i < NSLOT; i++) free(G.bytes[i]);
    memset(&G, 0, sizeof G);
    pthread_mutex_unlock(&mu);
}

/* What a test allocates is tracked, so that a test that fails half-way (a
 * fatal assertion leaves the test body) leaks nothing under LeakSanitizer:
 * .fini releases whatever the body did not. */
#define MAXTRACK 32
static weir_graph *tracked_graphs[MAXTRACK];
static void *tracked_mem[MAXTRACK];

static void *tmalloc(size_t n)
{
    void *p = calloc(n ? n : 1, 1);
    cr_assert_not_null(p);
    for (int i = 0; i < MAXTRACK; i++) {
        if (!tracked_mem[i]) {
            tracked_mem[i] = p;
            return p;
        }
    }
    cr_assert_fail("too many tracked allocations");
    return NULL;
}

static void tfree(void *p)
{
    for (int i = 0; i < MAXTRACK; i++)
        if (tracked_mem[i] == p) tracked_mem[i] = NULL;
    free(p);
}

static void destroy_graph(weir_graph *g)
{
    for (int i = 0; i < MAXTRACK; i++)
        if (tracked_graphs[i] == g) tracked_graphs[i] = NULL;
    weir_graph_destroy(g);
}

static void release_tracked(void)
{
    for (int i = 0; i < MAXTRACK; i++) {
        weir_graph_destroy(tracked_graphs[i]);
        tracked_graphs[i] = NULL;
        free(tracked_mem[i]);
        tracked_mem[i] = NULL;
    }
    pthread_mutex_lock(&mu);
    for (int i = 0; i < NSLOT; i++) {
        free(G.bytes[i]);
        G.bytes[i] = NULL;
    }
    pthread_mutex_unlock(&mu);
}

/* ---- helpers -------------------------------------------------------------------------- */

static void sleep_us(unsigned us)
{
    struct timespec ts = {us / 1000000u, (long)(us % 1000000u) * 1000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* A hash of the batch content: decides the jitter, so it is the same from
 * one run to the next but differs from batch to batch. */
static uint64_t content_hash(const weir_batch *b)
{
    uint64_t h = 0xcbf29ce484222325ull;
    size_t n = b->len < 64 ? b->len : 64;
    for (size_t i = 0; i < n; i++) h = (h ^ b->data[i]) * 0x100000001b3ull;
    return mix(h ^ b->len);
}

static int col_of(const weir_batch *b, const char *name)
{
    return b->schema ? weir_schema_find(b->schema, name) : -1;
}

static int64_t fld_i64(const weir_batch *b, uint32_t row, int col, size_t skip)
{
    size_t len;
    const unsigned char *f = weir_batch_field(b, row, (uint32_t)col, &len);
    char buf[32];
    if (len > 31) len = 31;
    memcpy(buf, f, len);
    buf[len] = '\0';
    return skip < len ? strtoll(buf + skip, NULL, 10) : -1;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* One chunk of the bytes source's stream: 1..5000 bytes. */
static size_t gen_chunk(uint64_t *state, unsigned char *buf)
{
    size_t len = 1 + (size_t)(xorshift(state) % 5000);
    for (size_t i = 0; i < len; i++) buf[i] = (unsigned char)(xorshift(state) >> 24);
    return len;
}

static void gen_expected(int64_t seed, int64_t chunks, unsigned char **out, size_t *outlen)
{
    uint64_t st = (uint64_t)seed * 0x9e3779b97f4a7c15ull + 1;
    unsigned char *buf = tmalloc((size_t)chunks * 5000 + 1);
    size_t len = 0;
    for (int64_t i = 0; i < chunks; i++) len += gen_chunk(&st, buf + len);
    *out = buf;
    *outlen = len;
}

/* ---- stage: rows_src ------------------------------------------------------------------------ */

typedef struct src_state {
    int64_t k, nb, m, start, mod;
    bool endless;
    weir_schema *schema;
} src_state;

static int src_open(weir_stage *s)
{
    src_state *st = calloc(1, sizeof *st);
    if (!st) return WEIR_ENOMEM;
    weir_stage_set_state(s, st);
    st->nb = weir_stage_arg_int(s, "batches");
    st->m = weir_stage_arg_int(s, "rows");
    st->start = weir_stage_arg_int(s, "start");
    st->mod = weir_stage_arg_int(s, "mod");
    st->endless = weir_stage_arg_bool(s, "endless");
    const char *cols[] = {"id", "key"};
    return weir_schema_create(&st->schema, cols, 2);
}

static int src_process(weir_stage *s, weir_batch *in)
{
    (void)in;
    src_state *st = weir_stage_state(s);
    if (!st->endless && st->k >= st->nb) return WEIR_DONE;
    weir_batch *b;
    int rc = weir_stage_batch(s, &b);
    if (rc) return weir_stage_errorf(s, rc, "no batch");
    rc = weir_batch_set_schema(b, st->schema);
    for (int64_t i = 0; rc == 0 && i < st->m; i++) {
        int64_t id = st->start + st->k * st->m + i;
        char buf[32];
        int n = snprintf(buf, sizeof buf, "%" PRId64, id);
        rc = weir_batch_add_field(b, buf, (size_t)n);
        if (rc == 0) {
            n = snprintf(buf, sizeof buf, "k%" PRId64, id % st->mod);
            rc = weir_batch_add_field(b, buf, (size_t)n);
        }
        if (rc == 0) rc = weir_batch_end_row(b);
    }
    st->k++;
    if (rc) {
        weir_batch_release(b);
        return weir_stage_errorf(s, rc, "building a batch");
    }
    /* An endless source never ends by itself: only when emit says so. */
    return weir_stage_emit(s, b);
}

static void src_close(weir_stage *s)
{
    src_state *st = weir_stage_state(s);
    if (st) weir_schema_release(st->schema);
    free(st);
}

static const weir_stage_def rows_src_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "rows_src",
    .summary = "K batches of M rows (id, key)",
    .args = (const weir_arg_def[]){{"batches", WEIR_ARG_INT, "10", "batches"},
                                   {"rows", WEIR_ARG_INT, "100", "rows per batch"},
                                   {"start", WEIR_ARG_INT, "0", "first id"},
                                   {"mod", WEIR_ARG_INT, "7", "key = id % mod"},
                                   {"endless", WEIR_ARG_BOOL, "false", "never end"},
                                   {NULL, WEIR_ARG_INT, NULL, NULL}},
    .in_kind = WEIR_KIND_NONE,
    .out_kind = WEIR_KIND_ROWS,
    .open = src_open,
    .process = src_process,
    .close = src_close,
};

/* ---- stage: bytes_src ------------------------------------------------------------------------ */

typedef struct bsrc_state {
    uint64_t rng;
    int64_t k, n;
    unsigned char buf[5000];
} bsrc_state;

static int bsrc_open(weir_stage *s)
{
    bsrc_state *st = calloc(1, sizeof *st);
    if (!st) return WEIR_ENOMEM;
    weir_stage_set_state(s, st);
    st->rng = (uint64_t)weir_stage_arg_int(s, "seed") * 0x9e3779b97f4a7c15ull + 1;
    st->n = weir_stage_arg_int(s, "chunks");
    return 0;
}

static int bsrc_process(weir_stage *s, weir_batch *in)
{
    (void)in;
    bsrc_state *st = weir_stage_state(s);
    if (st->k >= st->n) return WEIR_DONE;
    st->k++;
    size_t len = gen_chunk(&st->rng, st->buf);
    weir_batch *b;
    int rc = weir_stage_batch(s, &b);
    if (rc) return weir_stage_errorf(s, rc, "no batch");
    if ((rc = weir_batch_append(b, st->buf, len))) {
        weir_batch_release(b);
        return weir_stage_errorf(s, rc, "append");
    }
    return weir_stage_emit(s, b);
}

static void bsrc_close(weir_stage *s) { free(weir_stage_state(s)); }

static const weir_stage_def bytes_src_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "bytes_src",
    .summary = "pseudo-random chunks of bytes",
    .args = (const weir_arg_def[]){{"chunks", WEIR_ARG_INT, "40", "chunks"},
                                   {"seed", WEIR_ARG_INT, "1", "seed"},
                                   {NULL, WEIR_ARG_INT, NULL, NULL}},
    .in_kind = WEIR_KIND_NONE,
    .out_kind = WEIR_KIND_BYTES,
    .open = bsrc_open,
    .process = bsrc_process,
    .close = bsrc_close,
};

/* ---- stages: jitter / keyed (recording pass-through) ---------------------------------------- */

static void record(const weir_stage *s, const weir_batch *b)
{
    int r = weir_stage_replica(s);
    pthread_mutex_lock(&mu);
    if (r >= 0 && r < MAXREP) G.replica_batches[r]++;
    batch_rec br = {.first = -1, .replica = r, .nrows = b->nrows};
    if (b->kind == WEIR_KIND_ROWS && b->nrows) {
        int idc = col_of(b, "id"), kc = col_of(b, "key");
        if (idc >= 0) br.first = fld_i64(b, 0, idc, 0);
        for (uint32_t row = 0; row < b->nrows; row++) {
            if (idc >= 0) {
                int64_t id = fld_i64(b, row, idc, 0);
                if (id >= 0 && id < (int64_t)MAXID) {
                    G.id_seen[id]++;
                    G.id_replica[id] = r;
                }
            }
            if (kc >= 0) {
                int64_t key = fld_i64(b, row, kc, 1);
                if (key >= 0 && key < MAXKEY && r < MAXREP) G.key_mask[key] |= 1ull << r;
            }
        }
    } else {
        G.rec_bytes += b->len;
    }
    if (G.nbatches < MAXBATCH) G.batches[G.nbatches++] = br;
    pthread_mutex_unlock(&mu);
}

static int jitter_process(weir_stage *s, weir_batch *in)
{
    sleep_us((unsigned)(content_hash(in) % 3000)); /* 0-3 ms */
    record(s, in);
    return weir_stage_emit(s, in);
}

static const weir_stage_def jitter_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "jitter",
    .summary = "pass-through with a content-dependent delay; records replicas",
    .args = (const weir_arg_def[]){{NULL, WEIR_ARG_INT, NULL, NULL}},
    .in_kind = WEIR_KIND_ANY,
    .out_kind = WEIR_KIND_ANY,
    .flags = WEIR_STAGE_PARALLEL,
    .process = jitter_process,
};

static const weir_stage_def keyed_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "keyed",
    .summary = "keyed pass-through; records replicas",
    .args = (const weir_arg_def[]){{NULL, WEIR_ARG_INT, NULL, NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_ROWS,
    .flags = WEIR_STAGE_PARALLEL | WEIR_STAGE_KEYED,
    .process = jitter_process,
};

/* narrow_sink: keyed; reads only key (weir_stage_reads), checks that
 * every row batch it gets holds it, and counts the batches that hold just
 * that column. */
static _Atomic int narrow_batches, wide_batches, narrow_rows, reads_at_run;

static int narrow_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    (void)in;
    (void)out;
    const char *cols[] = {"key"};
    return weir_stage_reads(s, cols, 1);
}

static int narrow_process(weir_stage *s, weir_batch *in)
{
    const char *cols[] = {"id"};
    if (weir_stage_reads(s, cols, 1) == WEIR_EINVAL) reads_at_run = 1; /* plan time only */
    if (in->nrows) {
        int k = col_of(in, "key");
        if (k < 0) {
            weir_batch_release(in);
            return weir_stage_errorf(s, WEIR_EDATA, "no key column");
        }
        if (in->ncols == 1) narrow_batches++;
        else wide_batches++;
        narrow_rows += (int)in->nrows;
        record(s, in);
    }
    weir_batch_release(in);
    return 0;
}

static const weir_stage_def narrow_sink_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "narrow_sink",
    .summary = "keyed sink that reads one column",
    .args = (const weir_arg_def[]){{NULL, WEIR_ARG_INT, NULL, NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_NONE,
    .flags = WEIR_STAGE_PARALLEL | WEIR_STAGE_KEYED,
    .plan = narrow_plan,
    .process = narrow_process,
};

static int keyed_sink_process(weir_stage *s, weir_batch *in)
{
    sleep_us((unsigned)(content_hash(in) % 1000));
    record(s, in);
    weir_batch_release(in);
    return 0;
}

static const weir_stage_def keyed_sink_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "keyed_sink",
    .summary = "keyed recording sink",
    .args = (const weir_arg_def[]){{NULL, WEIR_ARG_INT, NULL, NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_NONE,
    .flags = WEIR_STAGE_PARALLEL | WEIR_STAGE_KEYED,
    .process = keyed_sink_process,
};

/* ---- stage: vary (0, 1 or 3 outputs per input) ---------------------------------------------- */

static int vary_process(weir_stage *s, weir_batch *in)
{
    int idc = col_of(in, "id");
    if (idc < 0 || in->nrows == 0) {
        weir_batch_release(in);
        return weir_stage_errorf(s, WEIR_EDATA, "vary: no id column");
    }
    int64_t first = fld_i64(in, 0, idc, 0);
    uint64_t h = content_hash(in);
    sleep_us((unsigned)(h % 2000));
    switch (first % 3) {
    case 0: /* no output for this input */
        weir_batch_release(in);
        return 0;
    case 1: /* the input itself */
        return weir_stage_emit(s, in);
    default: /* three pieces */
        break;
    }
    uint32_t n = in->nrows;
    for (uint32_t p = 0; p < 3; p++) {
        weir_batch *out;
        int rc = weir_stage_batch(s, &out);
        if (rc == 0) rc = weir_batch_set_schema(out, in->schema);
        if (rc) {
            weir_batch_release(in);
            return weir_stage_errorf(s, rc, "vary: no batch");
        }
        for (uint32_t row = p * n / 3; rc == 0 && row < (p + 1) * n / 3; row++)
            rc = weir_batch_copy_row(out, in, row);
        if (rc) {
            weir_batch_release(out);
            weir_batch_release(in);
            return weir_stage_errorf(s, rc, "vary: copy_row");
        }
        if (p == 1) sleep_us((unsigned)((h >> 20) % 1000));
        rc = weir_stage_emit(s, out);
        if (rc) {
            weir_batch_release(in);
            return rc;
        }
    }
    weir_batch_release(in);
    return 0;
}

static const weir_stage_def vary_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "vary",
    .summary = "0, 1 or 3 output batches per input",
    .args = (const weir_arg_def[]){{NULL, WEIR_ARG_INT, NULL, NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_ROWS,
    .flags = WEIR_STAGE_PARALLEL,
    .process = vary_process,
};

/* ---- stage: stopper (a parallel stage that ends early) ------------------------------------ */

static int stopper_process(weir_stage *s, weir_batch *in)
{
    int64_t at = weir_stage_arg_int(s, "at");
    int idc = col_of(in, "id");
    bool stop = false;
    for (uint32_t row = 0; idc >= 0 && row < in->nrows; row++)
        if (fld_i64(in, row, idc, 0) == at) stop = true;
    sleep_us((unsigned)(content_hash(in) % 2000));
    int rc = weir_stage_emit(s, in);
    if (rc) return rc;
    return stop ? WEIR_DONE : 0;
}

static const weir_stage_def stopper_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "stopper",
    .summary = "passes batches on; WEIR_DONE after the one holding id `at`",
    .args = (const weir_arg_def[]){{"at", WEIR_ARG_INT, "0", "last id needed"},
                                   {NULL, WEIR_ARG_INT, NULL, NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_ROWS,
    .flags = WEIR_STAGE_PARALLEL,
    .process = stopper_process,
};

/* ---- stage: tailer (parallel; emits one row per replica from finish) ---------------------- */

#define TAIL_ID 1000000

static int tailer_finish(weir_stage *s)
{
    const char *cols[] = {"id", "key"};
    weir_schema *schema;
    int rc = weir_schema_create(&schema, cols, 2);
    if (rc) return weir_stage_errorf(s, rc, "schema");
    weir_batch *b;
    rc = weir_stage_batch(s, &b);
    if (rc == 0) rc = weir_batch_set_schema(b, schema);
    weir_schema_release(schema);
    if (rc) {
        weir_batch_release(b);
        return weir_stage_errorf(s, rc, "batch");
    }
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%d", TAIL_ID + weir_stage_replica(s));
    if ((rc = weir_batch_add_field(b, buf, (size_t)n)) == 0 &&
        (rc = weir_batch_add_field(b, "kt", 2)) == 0)
        rc = weir_batch_end_row(b);
    if (rc) {
        weir_batch_release(b);
        return weir_stage_errorf(s, rc, "row");
    }
    sleep_us((unsigned)(weir_stage_replica(s) * 700 % 2000));
    rc = weir_stage_emit(s, b);
    return rc == WEIR_DONE ? 0 : rc;
}

static const weir_stage_def tailer_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "tailer",
    .summary = "jittery pass-through; one extra row per replica at the end",
    .args = (const weir_arg_def[]){{NULL, WEIR_ARG_INT, NULL, NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_ROWS,
    .flags = WEIR_STAGE_PARALLEL,
    .process = jitter_process,
    .finish = tailer_finish,
};

/* ---- stage: capture (sink) --------------------------------------------------------------------- */

static int capture_process(weir_stage *s, weir_batch *in)
{
    int slot = (int)weir_stage_arg_int(s, "slot");
    int idc = col_of(in, "id");
    pthread_mutex_lock(&mu);
    if (G.nb[slot] < MAXBATCH) {
        G.brows[slot][G.nb[slot]] = in->nrows;
        G.bschema[slot][G.nb[slot]] = idc >= 0 && col_of(in, "key") >= 0;
        G.nb[slot]++;
    }
    pthread_mutex_unlock(&mu);
    if (idc < 0 && in->nrows) {
        weir_batch_release(in);
        return weir_stage_errorf(s, WEIR_EDATA, "capture: no id column");
    }
    pthread_mutex_lock(&mu);
    for (uint32_t row = 0; row < in->nrows; row++) {
        if (G.nids[slot] < MAXID) G.ids[slot][G.nids[slot]++] = fld_i64(in, row, idc, 0);
        G.rows[slot]++;
    }
    pthread_mutex_unlock(&mu);
    weir_batch_release(in);
    return 0;
}

static int capture_finish(weir_stage *s)
{
    int slot = (int)weir_stage_arg_int(s, "slot");
    pthread_mutex_lock(&mu);
    G.capture_finished[slot]++;
    pthread_mutex_unlock(&mu);
    return 0;
}

static const weir_stage_def capture_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "capture",
    .summary = "records every id in arrival order",
    .args = (const weir_arg_def[]){{"slot", WEIR_ARG_INT, "0", "record slot"},
                                   {NULL, WEIR_ARG_INT, NULL, NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_NONE,
    .process = capture_process,
    .finish = capture_finish,
};

/* ---- stage: head -------------------------------------------------------------------------------- */

static int head_open(weir_stage *s)
{
    int64_t *seen = calloc(1, sizeof *seen);
    if (!seen) return WEIR_ENOMEM;
    weir_stage_set_state(s, seen);
    return 0;
}

static int head_process(weir_stage *s, weir_batch *in)
{
    int64_t *seen = weir_stage_state(s);
    int64_t limit = weir_stage_arg_int(s, "rows");
    if (*seen >= limit) {
        weir_batch_release(in);
        return WEIR_DONE;
    }
    int64_t left = limit - *seen;
    if ((int64_t)in->nrows <= left) {
        *seen += in->nrows;
        int rc = weir_stage_emit(s, in);
        if (rc) return rc;
        return *seen >= limit ? WEIR_DONE : 0;
    }
    /* The input may be shared (broadcast): copy the rows we keep. */
    weir_batch *out;
    int rc = weir_stage_batch(s, &out);
    if (rc == 0) rc = weir_batch_set_schema(out, in->schema);
    for (uint32_t row = 0; rc == 0 && row < (uint32_t)left; row++)
        rc = weir_batch_copy_row(out, in, row);
    weir_batch_release(in);
    if (rc) {
        weir_batch_release(out);
        return weir_stage_errorf(s, rc, "head: copy");
    }
    *seen = limit;
    rc = weir_stage_emit(s, out);
    return rc ? rc : WEIR_DONE;
}

static void head_close(weir_stage *s) { free(weir_stage_state(s)); }

static const weir_stage_def head_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "head",
    .summary = "the first rows, then done",
    .args = (const weir_arg_def[]){{"rows", WEIR_ARG_INT, "5", "rows to keep"},
                                   {NULL, WEIR_ARG_INT, NULL, NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_ROWS,
    .open = head_open,
    .process = head_process,
    .close = head_close,
};

/* ---- stage: fail ---------------------------------------------------------------------------------- */

static int fail_process(weir_stage *s, weir_batch *in)
{
    int64_t at = weir_stage_arg_int(s, "at");
    int idc = col_of(in, "id");
    for (uint32_t row = 0; idc >= 0 && row < in->nrows; row++) {
        if (fld_i64(in, row, idc, 0) == at) {
            weir_batch_release(in);
            return weir_stage_errorf(s, WEIR_EDATA, "bad row %d", (int)at);
        }
    }
    return weir_stage_emit(s, in);
}

static const weir_stage_def fail_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "fail",
    .summary = "fails on the batch holding id `at`",
    .args = (const weir_arg_def[]){{"at", WEIR_ARG_INT, "3", "failing id"},
                                   {NULL, WEIR_ARG_INT, NULL, NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_ROWS,
    .flags = WEIR_STAGE_PARALLEL,
    .process = fail_process,
};

/* ---- stages: bytes sinks -------------------------------------------------------------------------- */

static int bytes_cat_process(weir_stage *s, weir_batch *in)
{
    int slot = (int)weir_stage_arg_int(s, "slot");
    pthread_mutex_lock(&mu);
    int rc = 0;
    if (G.nbytes[slot] + in->len > G.capbytes[slot]) {
        size_t ncap = (G.capbytes[slot] + in->len) * 2;
        unsigned char *p = realloc(G.bytes[slot], ncap);
        if (p) {
            G.bytes[slot] = p;
            G.capbytes[slot] = ncap;
        } else {
            rc = WEIR_ENOMEM;
        }
    }
    if (rc == 0) {
        memcpy(G.bytes[slot] + G.nbytes[slot], in->data, in->len);
        G.nbytes[slot] += in->len;
    }
    pthread_mutex_unlock(&mu);
    weir_batch_release(in);
    return rc ? weir_stage_errorf(s, rc, "bytes_cat: out of memory") : 0;
}

static const weir_stage_def bytes_cat_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "bytes_cat",
    .summary = "concatenates bytes",
    .args = (const weir_arg_def[]){{"slot", WEIR_ARG_INT, "0", "record slot"},
                                   {NULL, WEIR_ARG_INT, NULL, NULL}},
    .in_kind = WEIR_KIND_BYTES,
    .out_kind = WEIR_KIND_NONE,
    .process = bytes_cat_process,
};

static int bytes_count_process(weir_stage *s, weir_batch *in)
{
    int slot = (int)weir_stage_arg_int(s, "slot");
    pthread_mutex_lock(&mu);
    G.bytecount[slot] += in->len;
    G.bytebatches[slot]++;
    pthread_mutex_unlock(&mu);
    weir_batch_release(in);
    return 0;
}

static const weir_stage_def bytes_count_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "bytes_count",
    .summary = "counts bytes",
    .args = (const weir_arg_def[]){{"slot", WEIR_ARG_INT, "0", "record slot"},
                                   {NULL, WEIR_ARG_INT, NULL, NULL}},
    .in_kind = WEIR_KIND_BYTES,
    .out_kind = WEIR_KIND_NONE,
    .process = bytes_count_process,
};

/* ---- stages: probe (arguments) and needy (a required argument) ------------------------------------ */

static const char *const probe_names[6] = {"n", "ratio", "flag", "name", "cols", "scale"};

static int probe_open(weir_stage *s)
{
    pthread_mutex_lock(&mu);
    G.probe_opened++;
    G.p_int = weir_stage_arg_int(s, "n");
    G.p_float = weir_stage_arg_float(s, "ratio");
    G.p_bool = weir_stage_arg_bool(s, "flag");
    const char *str = weir_stage_arg_str(s, "name");
    snprintf(G.p_str, sizeof G.p_str, "%s", str ? str : "(null)");
    const char *const *items;
    G.p_nlist = weir_stage_arg_list(s, "cols", &items);
    for (size_t i = 0; i < G.p_nlist && i < 8; i++)
        snprintf(G.p_list[i], sizeof G.p_list[i], "%s", items[i]);
    G.p_float2 = weir_stage_arg_float(s, "scale");
    for (int i = 0; i < 6; i++) G.p_given[i] = weir_stage_arg_given(s, probe_names[i]);
    G.p_replicas = weir_stage_replicas(s);
    pthread_mutex_unlock(&mu);
    return 0;
}

static int drop_process(weir_stage *s, weir_batch *in)
{
    (void)s;
    weir_batch_release(in);
    return 0;
}

static const weir_stage_def probe_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "probe",
    .summary = "records its arguments",
    .args = (const weir_arg_def[]){{"n", WEIR_ARG_INT, "42", "an int"},
                                   {"ratio", WEIR_ARG_FLOAT, "0.5", "a float"},
                                   {"flag", WEIR_ARG_BOOL, "true", "a bool"},
                                   {"name", WEIR_ARG_STRING, "hello", "a string"},
                                   {"cols", WEIR_ARG_LIST, "a,b", "a list"},
                                   {"scale", WEIR_ARG_FLOAT, "2.25", "another float"},
                                   {NULL, WEIR_ARG_INT, NULL, NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_NONE,
    .open = probe_open,
    .process = drop_process,
};

static const weir_stage_def needy_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "needy",
    .summary = "has a required argument",
    .args = (const weir_arg_def[]){{"path", WEIR_ARG_STRING, NULL, "required"},
                                   {NULL, WEIR_ARG_INT, NULL, NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_NONE,
    .process = drop_process,
};

/* A rows transform that is not parallel-safe. */
static int pass_process(weir_stage *s, weir_batch *in) { return weir_stage_emit(s, in); }

static const weir_stage_def serial_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "serial",
    .summary = "serial pass-through",
    .args = (const weir_arg_def[]){{NULL, WEIR_ARG_INT, NULL, NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_ROWS,
    .process = pass_process,
};

/* ---- graph-building helpers --------------------------------------------------------------------- */

static weir_graph *mkgraph(void)
{
    weir_graph *g = NULL;
    cr_assert_eq(weir_graph_create(&g), 0);
    cr_assert_not_null(g);
    for (int i = 0; i < MAXTRACK; i++) {
        if (!tracked_graphs[i]) {
            tracked_graphs[i] = g;
            return g;
        }
    }
    weir_graph_destroy(g);
    cr_assert_fail("too many graphs");
    return NULL;
}

static weir_node *add(weir_graph *g, const weir_stage_def *d, const char *label)
{
    weir_node *n = NULL;
    int rc = weir_graph_add(g, d, label, &n);
    cr_assert_eq(rc, 0, "add %s: %s (%s)", label ? label : d->name, weir_errname(rc),
                 weir_graph_errmsg(g));
    cr_assert_not_null(n);
    return n;
}

static void conn(weir_graph *g, weir_node *a, weir_node *b)
{
    int rc = weir_graph_connect(g, a, b);
    cr_assert_eq(rc, 0, "connect: %s (%s)", weir_errname(rc), weir_graph_errmsg(g));
}

/* Connect nodes[0] -> nodes[1] -> ... -> nodes[n-1]. */
static void conn_line(weir_graph *g, weir_node *const *nodes, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) conn(g, nodes[i], nodes[i + 1]);
}

static void seti(weir_node *n, const char *arg, int64_t v)
{
    int rc = weir_node_set_int(n, arg, v);
    cr_assert_eq(rc, 0, "set %s=%" PRId64 ": %s", arg, v, weir_errname(rc));
}

static void setb(weir_node *n, const char *arg, bool v)
{
    int rc = weir_node_set_bool(n, arg, v);
    cr_assert_eq(rc, 0, "set %s: %s", arg, weir_errname(rc));
}

static weir_node *rows_src(weir_graph *g, const char *label, int64_t batches, int64_t rows,
                           int64_t start)
{
    weir_node *n = add(g, &rows_src_def, label);
    seti(n, "batches", batches);
    seti(n, "rows", rows);
    seti(n, "start", start);
    return n;
}

static weir_node *endless_src(weir_graph *g, const char *label, int64_t rows)
{
    weir_node *n = add(g, &rows_src_def, label);
    seti(n, "rows", rows);
    setb(n, "endless", true);
    return n;
}

static weir_node *capture(weir_graph *g, const char *label, int slot)
{
    weir_node *n = add(g, &capture_def, label);
    seti(n, "slot", slot);
    return n;
}

static void run_ok(weir_graph *g, const weir_run_opts *o)
{
    int rc = weir_graph_run(g, NULL, o);
    cr_assert_eq(rc, 0, "run: %s (%s)", weir_errname(rc), weir_graph_errmsg(g));
}

static weir_node_stats stats(const weir_node *n)
{
    weir_node_stats st;
    memset(&st, 0xff, sizeof st);
    cr_assert_eq(weir_node_get_stats(n, &st), 0);
    return st;
}

/* ---- checks on the records ------------------------------------------------------------------------ */

/* Slot holds exactly start, start+1, …, start+count-1 in this order. */
static void expect_seq(int slot, int64_t start, size_t count)
{
    cr_assert_eq(G.rows[slot], count, "slot %d: %" PRIu64 " rows, expected %zu", slot,
                 G.rows[slot], count);
    for (size_t i = 0; i < count; i++)
        cr_assert_eq(G.ids[slot][i], start + (int64_t)i,
                     "slot %d: position %zu holds id %" PRId64 ", expected %" PRId64, slot,
                     i, G.ids[slot][i], start + (int64_t)i);
}

/* Slot holds exactly the ids of want[0..n), in that order. */
static void expect_ids(int slot, const int64_t *want, size_t n)
{
    cr_assert_eq(G.rows[slot], n, "slot %d: %" PRIu64 " rows, expected %zu", slot,
                 G.rows[slot], n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(G.ids[slot][i], want[i],
                     "slot %d: position %zu holds id %" PRId64 ", expected %" PRId64, slot,
                     i, G.ids[slot][i], want[i]);
}

/* Slot holds every id in [lo, hi) exactly once and nothing else, in any
 * order. */
static void expect_set(int slot, int64_t lo, int64_t hi)
{
    size_t n = (size_t)(hi - lo);
    cr_assert_eq(G.rows[slot], n, "slot %d: %" PRIu64 " rows, expected %zu", slot,
                 G.rows[slot], n);
    unsigned char *seen = tmalloc(n);
    cr_assert_not_null(seen);
    for (size_t i = 0; i < G.nids[slot]; i++) {
        int64_t id = G.ids[slot][i];
        cr_assert(id >= lo && id < hi, "slot %d: unexpected id %" PRId64, slot, id);
        cr_assert_eq(seen[id - lo], 0, "slot %d: id %" PRId64 " arrived twice", slot, id);
        seen[id - lo] = 1;
    }
    tfree(seen);
}

/* The ids the vary stage lets through for K batches of M rows from 0. */
static size_t vary_expected(int64_t K, int64_t M, int64_t *out)
{
    size_t n = 0;
    for (int64_t k = 0; k < K; k++) {
        int64_t first = k * M;
        if (first % 3 == 0) continue;
        for (int64_t i = 0; i < M; i++) out[n++] = first + i;
    }
    return n;
}

static int replicas_that_saw_data(void)
{
    int n = 0;
    for (int r = 0; r < MAXREP; r++) n += G.replica_batches[r] > 0;
    return n;
}

/* ======================================================================================== */
/* Linear                                                                                   */
/* ======================================================================================== */

GTEST(linear_source_to_sink)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 20, 50, 0);
    weir_node *sink = capture(g, "sink", 0);
    conn(g, src, sink);
    run_ok(g, NULL);
    expect_seq(0, 0, 1000);
    cr_expect_eq(G.capture_finished[0], 1, "finish called once");

    weir_node_stats s = stats(src), k = stats(sink);
    cr_expect_eq(s.rows_out, 1000);
    cr_expect_eq(s.batches_out, 20);
    cr_expect_eq(s.rows_in, 0);
    cr_expect_eq(s.replicas, 1);
    cr_expect_eq(k.rows_in, 1000);
    cr_expect_eq(k.batches_in, 20);
    cr_expect_eq(k.rows_out, 0);
    cr_expect_eq(k.batches_out, 0);
    cr_expect_eq(k.replicas, 1);
    cr_expect_eq(k.bytes_in, s.bytes_out);
    cr_expect_gt(k.bytes_in, 0);
    destroy_graph(g);
}

GTEST(linear_through_serial_transform_and_small_channels)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 50, 7, 0);
    weir_node *mid = add(g, &serial_def, "mid");
    weir_node *sink = capture(g, "sink", 0);
    conn(g, src, mid);
    conn(g, mid, sink);
    weir_run_opts o = {.chan_capacity = 1};
    run_ok(g, &o);
    expect_seq(0, 0, 350);
    weir_node_stats m = stats(mid);
    cr_expect_eq(m.rows_in, 350);
    cr_expect_eq(m.rows_out, 350);
    cr_expect_eq(m.batches_in, 50);
    cr_expect_eq(m.batches_out, 50);
    destroy_graph(g);
}

/* ======================================================================================== */
/* Ordered collection                                                                       */
/* ======================================================================================== */

GTEST(ordered_jitter_workers4)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 60, 50, 0);
    weir_node *jit = add(g, &jitter_def, "jit");
    seti(jit, "workers", 4);
    weir_node *sink = capture(g, "sink", 0);
    conn(g, src, jit);
    conn(g, jit, sink);
    run_ok(g, NULL);
    expect_seq(0, 0, 3000);
    cr_expect_eq(replicas_that_saw_data(), 4, "every replica got batches (round-robin)");
    weir_node_stats j = stats(jit);
    cr_expect_eq(j.replicas, 4);
    cr_expect_eq(j.rows_in, 3000);
    cr_expect_eq(j.rows_out, 3000);
    cr_expect_eq(j.batches_in, 60);
    cr_expect_eq(j.batches_out, 60);
    cr_expect_eq(stats(sink).rows_in, 3000);
    destroy_graph(g);
}

GTEST(ordered_variable_output_replicated)
{
    int64_t *want = tmalloc((60 * 50) * sizeof *want);
    size_t nwant = vary_expected(60, 50, want);
    cr_assert_gt(nwant, 0);

    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 60, 50, 0);
    weir_node *var = add(g, &vary_def, "vary");
    seti(var, "workers", 4);
    weir_node *sink = capture(g, "sink", 0);
    conn(g, src, var);
    conn(g, var, sink);
    run_ok(g, NULL);
    expect_ids(0, want, nwant);
    weir_node_stats v = stats(var);
    cr_expect_eq(v.replicas, 4);
    cr_expect_eq(v.rows_in, 3000);
    cr_expect_eq(v.rows_out, nwant);
    cr_expect_eq(v.batches_in, 60);
    cr_expect_eq(stats(sink).rows_in, nwant);
    tfree(want);
    destroy_graph(g);
}

/* Empty batches: only a stage's first, carrying its schema, goes on (that
 * is how the columns travel when there are no rows); after that, none. */
static void expect_no_empty_batch_but_first(int slot)
{
    for (size_t i = 1; i < G.nb[slot]; i++)
        cr_expect_gt(G.brows[slot][i], 0, "slot %d: batch %zu is empty", slot, i);
    if (G.nb[slot] && G.brows[slot][0] == 0)
        cr_expect(G.bschema[slot][0], "slot %d: an empty first batch without the schema", slot);
}

/* vary splits 2-row batches into pieces of 0, 1 and 1 rows. */
GTEST(empty_batches_after_the_first_are_not_sent)
{
    int64_t *want = tmalloc(40 * 2 * sizeof *want);
    size_t nwant = vary_expected(40, 2, want);
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 40, 2, 0);
    weir_node *var = add(g, &vary_def, "vary");
    seti(var, "workers", 3);
    weir_node *sink = capture(g, "sink", 0);
    conn(g, src, var);
    conn(g, var, sink);
    run_ok(g, NULL);
    expect_ids(0, want, nwant);
    expect_no_empty_batch_but_first(0);
    cr_expect_eq(stats(sink).batches_in, G.nb[0]);
    tfree(want);
    destroy_graph(g);
}

/* A source whose batches have no rows: one empty batch with the schema
 * reaches the sink, whatever lies between. */
static void check_schema_only(int how)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 3, 0, 0);
    weir_node *sink = capture(g, "sink", 0);
    weir_node *mid = NULL;
    const char *cols[] = {"key"};
    switch (how) {
    case 0: break;
    case 1: mid = add(g, &serial_def, "mid"); break;
    case 2:
        mid = add(g, &jitter_def, "mid");
        seti(mid, "workers", 3);
        break;
    case 3:
        mid = add(g, &jitter_def, "mid");
        seti(mid, "workers", 3);
        setb(mid, "ordered", false);
        break;
    case 4:
        mid = add(g, &keyed_def, "mid");
        seti(mid, "workers", 3);
        cr_assert_eq(weir_node_partition(mid, cols, 1), 0);
        break;
    }
    if (mid) {
        conn(g, src, mid);
        conn(g, mid, sink);
    } else {
        conn(g, src, sink);
    }
    weir_node *sink2 = capture(g, "sink2", 1); /* and a broadcast branch */
    conn(g, src, sink2);
    run_ok(g, NULL);
    cr_expect_eq(stats(src).batches_out, 1, "the source's first empty batch only");
    for (int slot = 0; slot < 2; slot++) {
        cr_expect_eq(G.rows[slot], 0);
        cr_expect_eq(G.nb[slot], 1, "slot %d: %zu batches arrived, expected one (the schema)",
                     slot, G.nb[slot]);
        if (G.nb[slot] == 1) cr_expect(G.bschema[slot][0], "slot %d: no schema", slot);
    }
    destroy_graph(g);
}

GTEST(schema_only_batch_direct) { check_schema_only(0); }

GTEST(schema_only_batch_through_serial_stage) { check_schema_only(1); }

GTEST(schema_only_batch_through_ordered_replicas) { check_schema_only(2); }

GTEST(schema_only_batch_through_unordered_replicas) { check_schema_only(3); }

GTEST(schema_only_batch_through_hash_partition) { check_schema_only(4); }

GTEST(ordered_chain_of_replicated_stages)
{
    int64_t *want = tmalloc((80 * 31) * sizeof *want);
    size_t nwant = vary_expected(80, 31, want);

    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 80, 31, 0);
    weir_node *jit = add(g, &jitter_def, "jit");
    seti(jit, "workers", 3);
    weir_node *var = add(g, &vary_def, "vary");
    seti(var, "workers", 4);
    weir_node *jit2 = add(g, &jitter_def, "jit2");
    seti(jit2, "workers", 2);
    weir_node *sink = capture(g, "sink", 0);
    conn(g, src, jit);
    conn(g, jit, var);
    conn(g, var, jit2);
    conn(g, jit2, sink);
    weir_run_opts o = {.chan_capacity = 2};
    run_ok(g, &o);
    expect_ids(0, want, nwant);
    tfree(want);
    destroy_graph(g);
}

/* Chaining: a replicated stage whose one consumer has as many replicas
 * feeds it replica to replica, with no collector between; the last
 * collector restores source order for the whole chain. */
static bool described_chained(weir_graph *g, const char *label)
{
    char buf[8192];
    weir_graph_describe(g, NULL, buf, sizeof buf);
    char want[128];
    snprintf(want, sizeof want, "each feeding the same replica of %s", label);
    return strstr(buf, want) != NULL;
}

static void check_chain(bool chain)
{
    if (!chain) setenv("WEIR_NO_CHAIN", "1", 1);
    int64_t *want = tmalloc((80 * 31) * sizeof *want);
    size_t nwant = vary_expected(80, 31, want);
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 80, 31, 0);
    weir_node *jit = add(g, &jitter_def, "jit");
    weir_node *var = add(g, &vary_def, "vary"); /* 0, 1 or 3 batches a group */
    weir_node *jit2 = add(g, &jitter_def, "jit2");
    seti(jit, "workers", 3);
    seti(var, "workers", 3);
    seti(jit2, "workers", 3);
    weir_node *sink = capture(g, "sink", 0);
    conn_line(g, (weir_node *[]){src, jit, var, jit2, sink}, 5);
    weir_run_opts o = {.chan_capacity = 2};
    cr_expect_eq(described_chained(g, "vary"), chain);
    cr_expect_eq(described_chained(g, "jit2"), chain);
    cr_expect(!described_chained(g, "sink"), "the sink is not replicated");
    run_ok(g, &o);
    expect_ids(0, want, nwant);
    cr_expect_eq(stats(var).rows_in, 80 * 31);
    cr_expect_eq(stats(jit2).rows_in, nwant);
    /* Replica k of jit2 saw only what replica k of vary made of the
     * batches replica k of jit had: round-robin from the source. */
    if (chain)
        for (size_t i = 0; i < G.nbatches; i++)
            if (G.batches[i].first >= 0 && G.batches[i].nrows)
                cr_expect_eq(G.batches[i].replica, (int)((G.batches[i].first / 31) % 3),
                             "the batch from id %" PRId64 " on replica %d",
                             G.batches[i].first, G.batches[i].replica);
    tfree(want);
    destroy_graph(g);
}

GTEST(chained_replicas_keep_source_order) { check_chain(true); }

GTEST(unchained_replicas_same_output) { check_chain(false); }

/* Upstream finish() output goes through the chain after all data. */
GTEST(chained_after_stage_with_finish_output)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 30, 20, 0);
    weir_node *t = add(g, &tailer_def, "tailer");
    weir_node *jit = add(g, &jitter_def, "jit");
    seti(t, "workers", 4);
    seti(jit, "workers", 4);
    weir_node *sink = capture(g, "sink", 0);
    conn_line(g, (weir_node *[]){src, t, jit, sink}, 4);
    cr_expect(described_chained(g, "jit"));
    run_ok(g, NULL);
    cr_assert_eq(G.rows[0], 600 + 4);
    for (size_t i = 0; i < 600; i++) cr_assert_eq(G.ids[0][i], (int64_t)i, "position %zu", i);
    int seen[4] = {0};
    for (size_t i = 600; i < 604; i++) {
        int64_t r = G.ids[0][i] - TAIL_ID;
        cr_assert(r >= 0 && r < 4, "position %zu holds id %" PRId64, i, G.ids[0][i]);
        cr_assert_eq(seen[r]++, 0);
    }
    destroy_graph(g);
}

/* Two stages with finish() output are not chained (their tails would
 * interleave differently). */
GTEST(not_chained_when_both_have_finish_output)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 10, 20, 0);
    weir_node *a = add(g, &tailer_def, "t1");
    weir_node *b = add(g, &tailer_def, "t2");
    seti(a, "workers", 2);
    seti(b, "workers", 2);
    weir_node *sink = capture(g, "sink", 0);
    conn_line(g, (weir_node *[]){src, a, b, sink}, 4);
    cr_expect(!described_chained(g, "t2"));
    run_ok(g, NULL);
    cr_expect_eq(G.rows[0], 200 + 2 + 2);
    destroy_graph(g);
}

/* A replica in the chain ends early: the output is still a prefix. */
GTEST(chained_early_done_gives_prefix)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 400, 10, 0);
    weir_node *jit = add(g, &jitter_def, "jit");
    weir_node *st = add(g, &stopper_def, "stopper");
    seti(jit, "workers", 4);
    seti(st, "workers", 4);
    seti(st, "at", 555);
    weir_node *sink = capture(g, "sink", 0);
    conn_line(g, (weir_node *[]){src, jit, st, sink}, 4);
    cr_expect(described_chained(g, "stopper"));
    run_ok(g, NULL);
    cr_assert_geq(G.rows[0], 560);
    for (size_t i = 0; i < G.nids[0]; i++)
        cr_assert_eq(G.ids[0][i], (int64_t)i, "position %zu holds id %" PRId64, i,
                     G.ids[0][i]);
    destroy_graph(g);
}

/* A failure in a chained replica ends the run with its message. */
GTEST(chained_error_is_reported)
{
    weir_graph *g = mkgraph();
    weir_node *src = endless_src(g, "src", 10);
    weir_node *jit = add(g, &jitter_def, "jit");
    weir_node *f = add(g, &fail_def, "checker");
    seti(jit, "workers", 3);
    seti(f, "workers", 3);
    seti(f, "at", 1234);
    weir_node *sink = capture(g, "sink", 0);
    conn_line(g, (weir_node *[]){src, jit, f, sink}, 4);
    cr_expect(described_chained(g, "checker"));
    int rc = weir_graph_run(g, NULL, NULL);
    const char *msg = weir_graph_errmsg(g);
    cr_expect_eq(rc, WEIR_EDATA, "got %s (%s)", weir_errname(rc), msg);
    cr_expect(strstr(msg, "bad row 1234") != NULL, "message: %s", msg);
    for (size_t i = 0; i < G.nids[0]; i++)
        cr_assert_eq(G.ids[0][i], (int64_t)i, "position %zu", i);
    destroy_graph(g);
}

GTEST(ordered_eight_replicas_on_few_cores)
{
    int64_t *want = tmalloc((100 * 20) * sizeof *want);
    size_t nwant = vary_expected(100, 20, want);

    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 100, 20, 0);
    weir_node *jit = add(g, &jitter_def, "jit"); /* workers from max_workers */
    weir_node *var = add(g, &vary_def, "vary");
    seti(var, "workers", 8);
    weir_node *sink = capture(g, "sink", 0);
    conn(g, src, jit);
    conn(g, jit, var);
    conn(g, var, sink);
    weir_run_opts o = {.max_workers = 8};
    run_ok(g, &o);
    expect_ids(0, want, nwant);
    cr_expect_eq(stats(jit).replicas, 8, "auto workers sized by max_workers");
    cr_expect_eq(stats(var).replicas, 8);
    cr_expect_eq(replicas_that_saw_data(), 8);
    tfree(want);
    destroy_graph(g);
}

GTEST(auto_workers_default_to_cpus)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 30, 10, 0);
    weir_node *jit = add(g, &jitter_def, "jit");
    weir_node *ser = add(g, &serial_def, "ser");
    weir_node *sink = capture(g, "sink", 0);
    conn(g, src, jit);
    conn(g, jit, ser);
    conn(g, ser, sink);
    run_ok(g, NULL);
    expect_seq(0, 0, 300);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cr_expect_eq(stats(jit).replicas, ncpu > 0 ? (int)ncpu : 1);
    cr_expect_eq(stats(ser).replicas, 1, "a serial stage is never replicated");
    destroy_graph(g);
}

/* A replica that ends early (WEIR_DONE) must not let the ordered collector
 * deliver later groups out of order: downstream sees a gap-free prefix of
 * the source, at least up to the batch that ended it. */
static void check_stopper(int workers, int64_t at)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 400, 10, 0);
    weir_node *st = add(g, &stopper_def, "stopper");
    seti(st, "workers", workers);
    seti(st, "at", at);
    weir_node *sink = capture(g, "sink", 0);
    conn(g, src, st);
    conn(g, st, sink);
    run_ok(g, NULL);
    cr_assert_geq(G.rows[0], (uint64_t)(at - at % 10 + 10), "the sink got %" PRIu64 " rows",
                  G.rows[0]);
    for (size_t i = 0; i < G.nids[0]; i++)
        cr_assert_eq(G.ids[0][i], (int64_t)i,
                     "position %zu holds id %" PRId64 ": not a prefix of the source", i,
                     G.ids[0][i]);
    destroy_graph(g);
}

GTEST(early_done_serial_stage_gives_prefix) { check_stopper(1, 555); }

GTEST(early_done_in_one_replica_keeps_order) { check_stopper(4, 555); }

/* finish() output of replicated stages: every data row in order, then one
 * row per replica. */
static void check_tailer(int64_t batches, int workers)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", batches, 20, 0);
    weir_node *t = add(g, &tailer_def, "tailer");
    seti(t, "workers", workers);
    weir_node *sink = capture(g, "sink", 0);
    conn(g, src, t);
    conn(g, t, sink);
    run_ok(g, NULL);
    size_t ndata = (size_t)(batches * 20);
    cr_assert_eq(G.rows[0], ndata + (size_t)workers);
    for (size_t i = 0; i < ndata; i++)
        cr_assert_eq(G.ids[0][i], (int64_t)i, "position %zu holds id %" PRId64, i,
                     G.ids[0][i]);
    int seen[64] = {0};
    for (size_t i = ndata; i < ndata + (size_t)workers; i++) {
        int64_t r = G.ids[0][i] - TAIL_ID;
        cr_assert(r >= 0 && r < workers, "position %zu holds id %" PRId64, i, G.ids[0][i]);
        cr_assert_eq(seen[r]++, 0, "replica %" PRId64 "'s finish row twice", r);
    }
    destroy_graph(g);
}

GTEST(ordered_finish_output_after_data) { check_tailer(30, 4); }

GTEST(ordered_finish_output_fewer_batches_than_replicas) { check_tailer(2, 4); }

GTEST(ordered_finish_output_no_batches) { check_tailer(0, 3); }

GTEST(unordered_every_id_once)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 60, 50, 0);
    weir_node *jit = add(g, &jitter_def, "jit");
    seti(jit, "workers", 4);
    setb(jit, "ordered", false);
    weir_node *sink = capture(g, "sink", 0);
    conn(g, src, jit);
    conn(g, jit, sink);
    run_ok(g, NULL);
    expect_set(0, 0, 3000);
    cr_expect_gt(replicas_that_saw_data(), 1);
    destroy_graph(g);
}

GTEST(unordered_variable_output)
{
    int64_t *want = tmalloc((60 * 50) * sizeof *want);
    size_t nwant = vary_expected(60, 50, want);
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 60, 50, 0);
    weir_node *var = add(g, &vary_def, "vary");
    seti(var, "workers", 3);
    setb(var, "ordered", false);
    weir_node *sink = capture(g, "sink", 0);
    conn(g, src, var);
    conn(g, var, sink);
    run_ok(g, NULL);
    cr_assert_eq(G.rows[0], nwant);
    /* Same multiset as the expected ids. */
    unsigned char *seen = tmalloc(3000);
    cr_assert_not_null(seen);
    for (size_t i = 0; i < nwant; i++) seen[want[i]] = 1;
    for (size_t i = 0; i < G.nids[0]; i++) {
        int64_t id = G.ids[0][i];
        cr_assert(id >= 0 && id < 3000 && seen[id] == 1, "unexpected or repeated id %" PRId64,
                  id);
        seen[id] = 2;
    }
    tfree(seen);
    tfree(want);
    destroy_graph(g);
}

/* ======================================================================================== */
/* Distribution                                                                             */
/* ======================================================================================== */

GTEST(round_robin_each_batch_to_one_replica)
{
    const int N = 4, K = 40, M = 25;
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", K, M, 0);
    weir_node *jit = add(g, &jitter_def, "jit");
    seti(jit, "workers", N);
    weir_node *sink = capture(g, "sink", 0);
    conn(g, src, jit);
    conn(g, jit, sink);
    run_ok(g, NULL);
    expect_seq(0, 0, (size_t)(K * M));
    cr_assert_eq(G.nbatches, (size_t)K, "each batch processed once by the replicas");
    int per_batch[40] = {0};
    for (size_t i = 0; i < G.nbatches; i++) {
        const batch_rec *b = &G.batches[i];
        cr_assert(b->first >= 0 && b->first % M == 0 && b->first / M < K,
                  "batch starting at %" PRId64, b->first);
        int k = (int)(b->first / M);
        per_batch[k]++;
        cr_expect_eq(b->nrows, (uint32_t)M);
        cr_expect_eq(b->replica, k % N, "batch %d went to replica %d, expected %d (k mod N)",
                     k, b->replica, k % N);
    }
    for (int k = 0; k < K; k++) cr_expect_eq(per_batch[k], 1, "batch %d seen %d times", k,
                                             per_batch[k]);
    for (int id = 0; id < K * M; id++)
        cr_assert_eq(G.id_seen[id], 1, "id %d seen %u times by the replicas", id,
                     G.id_seen[id]);
    for (int r = 0; r < N; r++) cr_expect_eq(G.replica_batches[r], (uint64_t)(K / N));
    destroy_graph(g);
}

static void check_key_partition(int64_t total, int64_t mod, int nrep)
{
    for (int64_t id = 0; id < total; id++)
        cr_assert_eq(G.id_seen[id], 1, "id %" PRId64 " seen %u times by the replicas", id,
                     G.id_seen[id]);
    uint64_t used = 0;
    for (int64_t k = 0; k < mod; k++) {
        uint64_t m = G.key_mask[k];
        cr_assert_neq(m, 0, "key k%" PRId64 " never seen", k);
        cr_assert_eq(m & (m - 1), 0,
                     "key k%" PRId64 " seen by several replicas (mask 0x%" PRIx64 ")", k, m);
        cr_assert_lt(m, 1ull << nrep);
        used |= m;
    }
    /* 50 keys over 3 replicas: more than one replica gets some. */
    cr_expect_neq(used & (used - 1), 0, "all keys went to one replica");
    /* And each id's replica is its key's replica. */
    for (int64_t id = 0; id < total; id++)
        cr_assert_eq(G.key_mask[id % mod], 1ull << G.id_replica[id]);
}

GTEST(hash_partition_key_to_one_replica)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 30, 100, 0);
    seti(src, "mod", 50);
    weir_node *kd = add(g, &keyed_def, "kd");
    seti(kd, "workers", 3);
    const char *cols[] = {"key"};
    cr_assert_eq(weir_node_partition(kd, cols, 1), 0);
    weir_node *sink = capture(g, "sink", 0);
    conn(g, src, kd);
    conn(g, kd, sink);
    run_ok(g, NULL);
    expect_set(0, 0, 3000);
    check_key_partition(3000, 50, 3);
    cr_expect_eq(stats(kd).replicas, 3);
    cr_expect_eq(stats(kd).rows_in, 3000);
    cr_expect_eq(stats(kd).rows_out, 3000);
    destroy_graph(g);
}

/* After a replicated stage, its replicas split the rows by key ahead of
 * its collector (which then only routes the parts): still every key on
 * one replica, and each key's rows in source order. */
GTEST(hash_partition_after_replicated_stage)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 40, 75, 0);
    seti(src, "mod", 50);
    weir_node *up = add(g, &stopper_def, "up"); /* shuffles completion; never stops */
    seti(up, "workers", 3);
    seti(up, "at", -1);
    weir_node *kd = add(g, &keyed_def, "kd");
    seti(kd, "workers", 4);
    const char *cols[] = {"key"};
    cr_assert_eq(weir_node_partition(kd, cols, 1), 0);
    weir_node *sink = capture(g, "sink", 0);
    conn_line(g, (weir_node *[]){src, up, kd, sink}, 4);
    char buf[4096];
    weir_graph_describe(g, NULL, buf, sizeof buf);
    cr_expect(strstr(buf, "the replicas split rows by key for kd") != NULL, "%s", buf);
    run_ok(g, NULL);
    expect_set(0, 0, 3000);
    check_key_partition(3000, 50, 4);
    int64_t last[50];
    for (int k = 0; k < 50; k++) last[k] = -1;
    for (size_t i = 0; i < G.nids[0]; i++) {
        int64_t id = G.ids[0][i];
        cr_assert_gt(id, last[id % 50], "key k%d: id %" PRId64 " after %" PRId64,
                     (int)(id % 50), id, last[id % 50]);
        last[id % 50] = id;
    }
    weir_node_stats c;
    cr_assert_eq(weir_node_replica_stats(up, WEIR_STATS_COLLECTOR, &c), 0);
    cr_expect_eq(c.rows_in, 3000);
    cr_expect_eq(c.rows_out, 3000);
    destroy_graph(g);
}

/* A consumer that declares the columns it reads gets just those after a
 * split by key (direct from a source, and from replicas ahead of their
 * collector); without a split it gets the batches as they are. */
static void check_narrow(int up_workers, int sink_workers)
{
    narrow_batches = wide_batches = narrow_rows = reads_at_run = 0;
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 20, 50, 0);
    seti(src, "mod", 30);
    weir_node *from = src;
    if (up_workers) {
        weir_node *up = add(g, &stopper_def, "up");
        seti(up, "workers", up_workers);
        seti(up, "at", -1);
        conn(g, src, up);
        from = up;
    }
    weir_node *ns = add(g, &narrow_sink_def, "ns");
    seti(ns, "workers", sink_workers);
    const char *cols[] = {"key"};
    cr_assert_eq(weir_node_partition(ns, cols, 1), 0);
    conn(g, from, ns);
    run_ok(g, NULL);
    cr_expect_eq(narrow_rows, 1000);
    cr_expect_eq(reads_at_run, 1, "weir_stage_reads is refused at run time");
    if (sink_workers > 1) {
        cr_expect_eq(wide_batches, 0, "%d batches with every column", (int)wide_batches);
        for (int k = 0; k < 30; k++) { /* still one replica per key */
            uint64_t m = G.key_mask[k];
            cr_expect(m && !(m & (m - 1)), "key k%d on replicas 0x%" PRIx64, k, m);
        }
    } else {
        cr_expect_eq(narrow_batches, 0, "no split, no projection");
    }
    destroy_graph(g);
}

GTEST(split_by_key_copies_only_read_columns) { check_narrow(0, 3); }

GTEST(presplit_copies_only_read_columns) { check_narrow(2, 3); }

GTEST(no_split_keeps_every_column) { check_narrow(0, 1); }

/* ---- channels bounded by memory as well as by count ---------------------- */

static const weir_node *fill_sink_node;
static _Atomic uint64_t fill_max_queued;

static int fill_src_process(weir_stage *s, weir_batch *in)
{
    (void)in;
    int64_t *left = weir_stage_state(s);
    if (!left) {
        if (!(left = malloc(sizeof *left))) return WEIR_ENOMEM;
        *left = weir_stage_arg_int(s, "batches");
        weir_stage_set_state(s, left);
    }
    if ((*left)-- <= 0) return WEIR_DONE;
    weir_batch *b;
    size_t size = (size_t)weir_stage_arg_int(s, "size");
    int rc = weir_stage_batch(s, &b);
    if (rc == 0 && (rc = weir_batch_reserve(b, size)) == 0) {
        memset(b->data, 'x', size);
        b->len = size;
    }
    if (rc) {
        weir_batch_release(b);
        return rc;
    }
    rc = weir_stage_emit(s, b);
    weir_node_stats st;
    weir_node_get_stats(fill_sink_node, &st); /* live: what waits in its channel */
    if (st.queued > fill_max_queued) fill_max_queued = st.queued;
    return rc;
}

static void fill_src_close(weir_stage *s) { free(weir_stage_state(s)); }

static const weir_stage_def fill_src_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "fill_src",
    .summary = "batches of `size` bytes; notes the most its consumer had queued",
    .args = (const weir_arg_def[]){{"batches", WEIR_ARG_INT, "40", "batches"},
                                   {"size", WEIR_ARG_INT, "4096", "bytes a batch"},
                                   {NULL, WEIR_ARG_INT, NULL, NULL}},
    .in_kind = WEIR_KIND_NONE,
    .out_kind = WEIR_KIND_BYTES,
    .process = fill_src_process,
    .close = fill_src_close,
};

static int slow_sink_process(weir_stage *s, weir_batch *in)
{
    (void)s;
    sleep_us(2000);
    weir_batch_release(in);
    return 0;
}

static const weir_stage_def slow_sink_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "slow_sink",
    .summary = "2 ms a batch",
    .args = (const weir_arg_def[]){{NULL, WEIR_ARG_INT, NULL, NULL}},
    .in_kind = WEIR_KIND_BYTES,
    .out_kind = WEIR_KIND_NONE,
    .process = slow_sink_process,
};

static uint64_t max_queued_for(int64_t size)
{
    fill_max_queued = 0;
    weir_graph *g = mkgraph();
    weir_node *src = add(g, &fill_src_def, "src");
    seti(src, "size", size);
    weir_node *sink = add(g, &slow_sink_def, "sink");
    fill_sink_node = sink;
    conn(g, src, sink);
    run_ok(g, NULL);
    destroy_graph(g);
    return fill_max_queued;
}

/* Small batches fill the channel's 16 slots; 1 MiB ones stop at about two
 * (2 MiB queued), so memory stays bounded whatever the batch size. */
GTEST(channel_bounded_by_memory_and_count)
{
    uint64_t small = max_queued_for(4096), big = max_queued_for(1 << 20);
    cr_expect_geq(small, 8, "4 KiB batches: at most %" PRIu64 " queued", small);
    cr_log_info("most queued: %" PRIu64 " of 4 KiB, %" PRIu64 " of 1 MiB", small, big);
    cr_expect_leq(small, 16);
    cr_expect_leq(big, 3, "1 MiB batches: %" PRIu64 " queued", big);
}

GTEST(hash_partition_replicated_sink)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 25, 80, 0);
    seti(src, "mod", 50);
    weir_node *ks = add(g, &keyed_sink_def, "ks");
    seti(ks, "workers", 3);
    const char *cols[] = {"key"};
    cr_assert_eq(weir_node_partition(ks, cols, 1), 0);
    conn(g, src, ks);
    run_ok(g, NULL);
    check_key_partition(2000, 50, 3);
    cr_expect_eq(stats(ks).rows_in, 2000);
    destroy_graph(g);
}

GTEST(hash_partition_unknown_column_fails)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 5, 10, 0);
    weir_node *kd = add(g, &keyed_def, "kd");
    seti(kd, "workers", 3);
    const char *cols[] = {"nope"};
    cr_assert_eq(weir_node_partition(kd, cols, 1), 0);
    weir_node *sink = capture(g, "sink", 0);
    conn(g, src, kd);
    conn(g, kd, sink);
    int rc = weir_graph_run(g, NULL, NULL);
    cr_expect_eq(rc, WEIR_ESPEC, "got %s", weir_errname(rc));
    cr_expect(strstr(weir_graph_errmsg(g), "nope") != NULL, "message: %s",
              weir_graph_errmsg(g));
    destroy_graph(g);
}

GTEST(keyed_without_partition_is_spec_error)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 5, 10, 0);
    weir_node *kd = add(g, &keyed_def, "my_keyed");
    seti(kd, "workers", 3);
    weir_node *sink = capture(g, "sink", 0);
    conn(g, src, kd);
    conn(g, kd, sink);
    int rc = weir_graph_run(g, NULL, NULL);
    cr_expect_eq(rc, WEIR_ESPEC, "got %s", weir_errname(rc));
    cr_expect(strstr(weir_graph_errmsg(g), "my_keyed") != NULL, "message: %s",
              weir_graph_errmsg(g));
    cr_expect_eq(G.rows[0], 0, "nothing ran");
    destroy_graph(g);
}

/* ======================================================================================== */
/* Broadcast                                                                                */
/* ======================================================================================== */

GTEST(broadcast_two_sinks)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 40, 30, 0);
    weir_node *a = capture(g, "a", 0);
    weir_node *b = capture(g, "b", 1);
    conn(g, src, a);
    conn(g, src, b);
    run_ok(g, NULL);
    expect_seq(0, 0, 1200);
    expect_seq(1, 0, 1200);
    destroy_graph(g);
}

GTEST(broadcast_transform_and_sink)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 40, 30, 0);
    weir_node *jit = add(g, &jitter_def, "jit");
    seti(jit, "workers", 3);
    weir_node *a = capture(g, "a", 0);
    weir_node *b = capture(g, "b", 1);
    conn(g, src, jit);
    conn(g, jit, a);
    conn(g, src, b);
    run_ok(g, NULL);
    expect_seq(0, 0, 1200);
    expect_seq(1, 0, 1200);
    destroy_graph(g);
}

GTEST(broadcast_serial_transform_and_sink)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 40, 30, 0);
    weir_node *mid = add(g, &serial_def, "mid");
    weir_node *a = capture(g, "a", 0);
    weir_node *b = capture(g, "b", 1);
    conn(g, src, mid);
    conn(g, src, b);
    conn(g, mid, a);
    run_ok(g, NULL);
    expect_seq(0, 0, 1200);
    expect_seq(1, 0, 1200);
    destroy_graph(g);
}

/* Two replicated ordered pass-through stages sharing the same (broadcast,
 * read-only) batches: each collector must restore source order on its own. */
GTEST(broadcast_into_two_replicated_ordered_stages)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 60, 20, 0);
    weir_node *j1 = add(g, &jitter_def, "j1");
    seti(j1, "workers", 3);
    weir_node *j2 = add(g, &jitter_def, "j2");
    seti(j2, "workers", 2);
    weir_node *a = capture(g, "a", 0);
    weir_node *b = capture(g, "b", 1);
    conn(g, src, j1);
    conn(g, src, j2);
    conn(g, j1, a);
    conn(g, j2, b);
    run_ok(g, NULL);
    expect_seq(0, 0, 1200);
    expect_seq(1, 0, 1200);
    destroy_graph(g);
}

/* Two serial pass-through stages forwarding the same shared batches: each
 * must see (and pass on) every batch, and the runtime must not write into a
 * batch that another branch is reading (TSan checks that part). */
GTEST(broadcast_into_two_pass_through_stages)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 300, 4, 0);
    weir_node *p1 = add(g, &serial_def, "p1");
    weir_node *p2 = add(g, &serial_def, "p2");
    weir_node *a = capture(g, "a", 0);
    weir_node *b = capture(g, "b", 1);
    conn(g, src, p1);
    conn(g, src, p2);
    conn(g, p1, a);
    conn(g, p2, b);
    run_ok(g, NULL);
    expect_seq(0, 0, 1200);
    expect_seq(1, 0, 1200);
    cr_expect_eq(stats(p1).batches_out, 300);
    cr_expect_eq(stats(p2).batches_out, 300);
    destroy_graph(g);
}

/* A replicated stage's output broadcast to two consumers. */
GTEST(broadcast_from_replicated_stage)
{
    int64_t *want = tmalloc((45 * 40) * sizeof *want);
    size_t nwant = vary_expected(45, 40, want);
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 45, 40, 0);
    weir_node *var = add(g, &vary_def, "vary");
    seti(var, "workers", 3);
    weir_node *a = capture(g, "a", 0);
    weir_node *b = capture(g, "b", 1);
    conn(g, src, var);
    conn(g, var, a);
    conn(g, var, b);
    run_ok(g, NULL);
    expect_ids(0, want, nwant);
    expect_ids(1, want, nwant);
    tfree(want);
    destroy_graph(g);
}

/* ======================================================================================== */
/* Fan-in                                                                                   */
/* ======================================================================================== */

GTEST(merge_two_sources)
{
    const weir_stage_def *merge = weir_stage_find("merge");
    cr_assert_not_null(merge);
    weir_graph *g = mkgraph();
    weir_node *a = rows_src(g, "a", 20, 50, 0);
    weir_node *b = rows_src(g, "b", 15, 40, 100000);
    weir_node *m = add(g, merge, "m");
    weir_node *sink = capture(g, "sink", 0);
    conn(g, a, m);
    conn(g, b, m);
    conn(g, m, sink);
    run_ok(g, NULL);
    cr_assert_eq(G.rows[0], 1000 + 600);
    unsigned char *seen = tmalloc(1600);
    cr_assert_not_null(seen);
    int64_t last_a = -1, last_b = 99999;
    for (size_t i = 0; i < G.nids[0]; i++) {
        int64_t id = G.ids[0][i];
        size_t slot;
        if (id >= 0 && id < 1000) {
            slot = (size_t)id;
            cr_expect_gt(id, last_a, "input a out of order");
            last_a = id;
        } else {
            cr_assert(id >= 100000 && id < 100600, "unexpected id %" PRId64, id);
            slot = 1000 + (size_t)(id - 100000);
            cr_expect_gt(id, last_b, "input b out of order");
            last_b = id;
        }
        cr_assert_eq(seen[slot], 0, "id %" PRId64 " twice", id);
        seen[slot] = 1;
    }
    tfree(seen);
    destroy_graph(g);
}

GTEST(concat_two_sources_in_order)
{
    const weir_stage_def *concat = weir_stage_find("concat");
    cr_assert_not_null(concat);
    weir_graph *g = mkgraph();
    weir_node *a = rows_src(g, "a", 30, 50, 0);
    weir_node *b = rows_src(g, "b", 30, 40, 100000);
    weir_node *c = add(g, concat, "c");
    weir_node *sink = capture(g, "sink", 0);
    conn(g, a, c);
    conn(g, b, c);
    conn(g, c, sink);
    weir_run_opts o = {.chan_capacity = 2}; /* b must wait for a */
    run_ok(g, &o);
    int64_t *want = tmalloc((2700) * sizeof *want);
    for (int i = 0; i < 1500; i++) want[i] = i;
    for (int i = 0; i < 1200; i++) want[1500 + i] = 100000 + i;
    expect_ids(0, want, 2700);
    tfree(want);
    destroy_graph(g);
}

GTEST(concat_second_connected_first)
{
    /* Ports are in connect order: connecting b first puts b first. */
    const weir_stage_def *concat = weir_stage_find("concat");
    cr_assert_not_null(concat);
    weir_graph *g = mkgraph();
    weir_node *a = rows_src(g, "a", 10, 10, 0);
    weir_node *b = rows_src(g, "b", 10, 10, 5000);
    weir_node *c = add(g, concat, "c");
    weir_node *sink = capture(g, "sink", 0);
    conn(g, b, c);
    conn(g, a, c);
    conn(g, c, sink);
    run_ok(g, NULL);
    int64_t want[200];
    for (int i = 0; i < 100; i++) want[i] = 5000 + i;
    for (int i = 0; i < 100; i++) want[100 + i] = i;
    expect_ids(0, want, 200);
    destroy_graph(g);
}

/* ======================================================================================== */
/* Early stop                                                                               */
/* ======================================================================================== */

GTEST(head_stops_endless_source)
{
    weir_graph *g = mkgraph();
    weir_node *src = endless_src(g, "src", 3);
    weir_node *head = add(g, &head_def, "head");
    seti(head, "rows", 5);
    weir_node *sink = capture(g, "sink", 0);
    conn(g, src, head);
    conn(g, head, sink);
    run_ok(g, NULL);
    expect_seq(0, 0, 5);
    cr_expect_eq(stats(head).rows_out, 5);
    cr_expect_eq(stats(sink).rows_in, 5);
    destroy_graph(g);
}

GTEST(head_stops_endless_source_through_replicas)
{
    weir_graph *g = mkgraph();
    weir_node *src = endless_src(g, "src", 2);
    weir_node *jit = add(g, &jitter_def, "jit");
    seti(jit, "workers", 4);
    weir_node *head = add(g, &head_def, "head");
    seti(head, "rows", 5);
    weir_node *sink = capture(g, "sink", 0);
    conn(g, src, jit);
    conn(g, jit, head);
    conn(g, head, sink);
    run_ok(g, NULL);
    expect_seq(0, 0, 5);
    destroy_graph(g);
}

GTEST(head_on_one_branch_other_branch_gets_everything)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 200, 10, 0);
    weir_node *head = add(g, &head_def, "head");
    seti(head, "rows", 5);
    weir_node *a = capture(g, "a", 0);
    weir_node *b = capture(g, "b", 1);
    conn(g, src, head);
    conn(g, head, a);
    conn(g, src, b);
    weir_run_opts o = {.chan_capacity = 2};
    run_ok(g, &o);
    expect_seq(0, 0, 5);
    expect_seq(1, 0, 2000);
    destroy_graph(g);
}

GTEST(head_on_every_branch_stops_endless_source)
{
    weir_graph *g = mkgraph();
    weir_node *src = endless_src(g, "src", 4);
    weir_node *h1 = add(g, &head_def, "h1");
    seti(h1, "rows", 5);
    weir_node *h2 = add(g, &head_def, "h2");
    seti(h2, "rows", 9);
    weir_node *a = capture(g, "a", 0);
    weir_node *b = capture(g, "b", 1);
    conn(g, src, h1);
    conn(g, src, h2);
    conn(g, h1, a);
    conn(g, h2, b);
    run_ok(g, NULL);
    expect_seq(0, 0, 5);
    expect_seq(1, 0, 9);
    destroy_graph(g);
}

/* ======================================================================================== */
/* Errors and cancellation                                                                  */
/* ======================================================================================== */

static void check_failure(int workers)
{
    weir_graph *g = mkgraph();
    weir_node *src = endless_src(g, "src", 10);
    weir_node *f = add(g, &fail_def, "checker");
    seti(f, "at", 1234);
    seti(f, "workers", workers);
    weir_node *sink = capture(g, "sink", 0);
    conn(g, src, f);
    conn(g, f, sink);
    int rc = weir_graph_run(g, NULL, NULL);
    const char *msg = weir_graph_errmsg(g);
    cr_expect_eq(rc, WEIR_EDATA, "got %s (%s)", weir_errname(rc), msg);
    cr_expect(strstr(msg, "stage 'checker'") != NULL, "message: %s", msg);
    cr_expect(strstr(msg, "bad row 1234") != NULL, "message: %s", msg);
    /* Even when failing, ordered collection only ever delivers source order:
     * what the sink got is a gap-free prefix, ending before the bad batch. */
    for (size_t i = 0; i < G.nids[0]; i++)
        cr_assert_eq(G.ids[0][i], (int64_t)i,
                     "position %zu holds id %" PRId64 ": not a prefix of the source", i,
                     G.ids[0][i]);
    cr_expect_leq(G.rows[0], 1230, "ids past the failing batch reached the sink");
    destroy_graph(g);
}

GTEST(first_error_cancels_run) { check_failure(1); }

GTEST(first_error_in_one_of_four_replicas) { check_failure(4); }

static int failing_open(weir_stage *s)
{
    return weir_stage_errorf(s, WEIR_EIO, "cannot open %s", "thing");
}

static const weir_stage_def failing_open_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "failing_open",
    .summary = "fails in open",
    .args = (const weir_arg_def[]){{NULL, WEIR_ARG_INT, NULL, NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_NONE,
    .open = failing_open,
    .process = drop_process,
};

GTEST(error_in_open_of_sink_cancels_endless_source)
{
    weir_graph *g = mkgraph();
    weir_node *src = endless_src(g, "src", 10);
    weir_node *sink = add(g, &failing_open_def, "opener");
    conn(g, src, sink);
    int rc = weir_graph_run(g, NULL, NULL);
    cr_expect_eq(rc, WEIR_EIO, "got %s", weir_errname(rc));
    cr_expect(strstr(weir_graph_errmsg(g), "stage 'opener'") != NULL, "message: %s",
              weir_graph_errmsg(g));
    cr_expect(strstr(weir_graph_errmsg(g), "cannot open thing") != NULL, "message: %s",
              weir_graph_errmsg(g));
    destroy_graph(g);
}

typedef struct canceller {
    weir_ctx *ctx;
    unsigned ms;
} canceller;

static void *cancel_later(void *p)
{
    canceller *c = p;
    sleep_us(c->ms * 1000u);
    /* Cancel a run that is under way: wait (up to 10 s: sanitizers on a
     * loaded machine start slowly) until the sink has seen rows. */
    for (int i = 0; i < 1000; i++) {
        pthread_mutex_lock(&mu);
        uint64_t rows = G.rows[0];
        pthread_mutex_unlock(&mu);
        if (rows > 0) break;
        sleep_us(10000);
    }
    weir_ctx_cancel(c->ctx, WEIR_ECANCELED);
    return NULL;
}

static weir_graph *endless_graph(int jitter_workers)
{
    weir_graph *g = mkgraph();
    weir_node *src = endless_src(g, "src", 10);
    weir_node *sink = capture(g, "sink", 0);
    if (jitter_workers) {
        weir_node *jit = add(g, &jitter_def, "jit");
        seti(jit, "workers", jitter_workers);
        conn(g, src, jit);
        conn(g, jit, sink);
    } else {
        conn(g, src, sink);
    }
    return g;
}

static void check_external_cancel(int jitter_workers)
{
    weir_graph *g = endless_graph(jitter_workers);
    weir_ctx *ctx = NULL;
    cr_assert_eq(weir_ctx_create(&ctx, NULL), 0);
    canceller c = {ctx, 100};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, cancel_later, &c), 0);
    int rc = weir_graph_run(g, ctx, NULL);
    pthread_join(th, NULL);
    cr_expect_eq(rc, WEIR_ECANCELED, "got %s (%s)", weir_errname(rc), weir_graph_errmsg(g));
    cr_expect_neq(weir_graph_errmsg(g)[0], '\0', "a message");
    cr_expect_gt(G.rows[0], 0, "the sink got data before the cancel");
    weir_ctx_destroy(ctx);
    destroy_graph(g);
}

GTEST(external_cancel) { check_external_cancel(0); }

GTEST(external_cancel_with_replicas) { check_external_cancel(4); }

static void check_deadline(int jitter_workers)
{
    weir_graph *g = endless_graph(jitter_workers);
    weir_ctx *ctx = NULL;
    cr_assert_eq(weir_ctx_create_timeout(&ctx, NULL, 100 * 1000000ull), 0);
    int rc = weir_graph_run(g, ctx, NULL);
    cr_expect_eq(rc, WEIR_EDEADLINE, "got %s (%s)", weir_errname(rc), weir_graph_errmsg(g));
    cr_expect_neq(weir_graph_errmsg(g)[0], '\0', "a message");
    weir_ctx_destroy(ctx);
    destroy_graph(g);
}

GTEST(deadline) { check_deadline(0); }

GTEST(deadline_with_replicas) { check_deadline(3); }

GTEST(already_cancelled_context)
{
    weir_graph *g = endless_graph(2);
    weir_ctx *ctx = NULL;
    cr_assert_eq(weir_ctx_create(&ctx, NULL), 0);
    weir_ctx_cancel(ctx, WEIR_ECANCELED);
    int rc = weir_graph_run(g, ctx, NULL);
    cr_expect_eq(rc, WEIR_ECANCELED, "got %s", weir_errname(rc));
    weir_ctx_destroy(ctx);
    destroy_graph(g);
}

/* ======================================================================================== */
/* Validation                                                                               */
/* ======================================================================================== */

static void expect_msg(const weir_graph *g, const char *part)
{
    const char *msg = weir_graph_errmsg(g);
    cr_expect_neq(msg[0], '\0', "an error message");
    if (part) cr_expect(strstr(msg, part) != NULL, "message '%s' lacks '%s'", msg, part);
}

GTEST(validate_cycle)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 2, 2, 0);
    weir_node *m = add(g, weir_stage_find("merge"), "m");
    weir_node *t = add(g, &serial_def, "t");
    weir_node *sink = capture(g, "sink", 0);
    conn(g, src, m);
    conn(g, m, t);
    conn(g, t, m); /* cycle m -> t -> m */
    conn(g, t, sink);
    int rc = weir_graph_run(g, NULL, NULL);
    cr_expect_eq(rc, WEIR_ESPEC, "got %s", weir_errname(rc));
    expect_msg(g, "cycle");
    destroy_graph(g);
}

GTEST(validate_two_node_cycle)
{
    weir_graph *g = mkgraph();
    weir_node *a = add(g, &serial_def, "a");
    weir_node *b = add(g, &serial_def, "b");
    conn(g, a, b);
    conn(g, b, a);
    int rc = weir_graph_run(g, NULL, NULL);
    cr_expect_eq(rc, WEIR_ESPEC, "got %s", weir_errname(rc));
    expect_msg(g, "cycle");
    destroy_graph(g);
}

GTEST(validate_output_never_used)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 2, 2, 0);
    weir_node *t = add(g, &serial_def, "dangling");
    conn(g, src, t);
    int rc = weir_graph_run(g, NULL, NULL);
    cr_expect_eq(rc, WEIR_ESPEC, "got %s", weir_errname(rc));
    expect_msg(g, "never used");
    expect_msg(g, "dangling");
    destroy_graph(g);
}

GTEST(validate_source_output_never_used)
{
    weir_graph *g = mkgraph();
    rows_src(g, "lonely", 2, 2, 0);
    int rc = weir_graph_run(g, NULL, NULL);
    cr_expect_eq(rc, WEIR_ESPEC, "got %s", weir_errname(rc));
    expect_msg(g, "lonely");
    destroy_graph(g);
}

GTEST(validate_empty_graph)
{
    weir_graph *g = mkgraph();
    int rc = weir_graph_run(g, NULL, NULL);
    cr_expect_eq(rc, WEIR_ESPEC, "got %s", weir_errname(rc));
    expect_msg(g, NULL);
    destroy_graph(g);
}

GTEST(validate_stage_without_input)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 2, 2, 0);
    weir_node *sink = capture(g, "sink", 0);
    capture(g, "orphan", 1);
    conn(g, src, sink);
    int rc = weir_graph_run(g, NULL, NULL);
    cr_expect_eq(rc, WEIR_ESPEC, "got %s", weir_errname(rc));
    expect_msg(g, "orphan");
    destroy_graph(g);
}

GTEST(validate_kind_mismatch_at_connect)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 2, 2, 0);
    weir_node *bc = add(g, &bytes_count_def, "counter");
    int rc = weir_graph_connect(g, src, bc);
    cr_expect_eq(rc, WEIR_EINVAL, "got %s", weir_errname(rc));
    expect_msg(g, "counter");
    /* And bytes into a rows stage. */
    weir_node *bs = add(g, &bytes_src_def, "bsrc");
    weir_node *cap = capture(g, "cap", 0);
    rc = weir_graph_connect(g, bs, cap);
    cr_expect_eq(rc, WEIR_EINVAL, "got %s", weir_errname(rc));
    destroy_graph(g);
}

GTEST(validate_kind_mismatch_through_any)
{
    /* bytes -> jitter (ANY) -> rows sink: only known when kinds resolve. */
    weir_graph *g = mkgraph();
    weir_node *bs = add(g, &bytes_src_def, "bsrc");
    weir_node *jit = add(g, &jitter_def, "jit");
    weir_node *cap = capture(g, "cap", 0);
    conn(g, bs, jit);
    conn(g, jit, cap);
    int rc = weir_graph_run(g, NULL, NULL);
    cr_expect_eq(rc, WEIR_ESPEC, "got %s", weir_errname(rc));
    expect_msg(g, "cap");
    destroy_graph(g);
}

GTEST(validate_connect_errors)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 2, 2, 0);
    weir_node *src2 = rows_src(g, "src2", 2, 2, 0);
    weir_node *t = add(g, &serial_def, "single");
    weir_node *sink = capture(g, "sink", 0);
    conn(g, src, t);
    int rc = weir_graph_connect(g, src2, t); /* second input */
    cr_expect_eq(rc, WEIR_EINVAL, "second input: got %s", weir_errname(rc));
    expect_msg(g, "single");
    rc = weir_graph_connect(g, t, t); /* self-loop */
    cr_expect_eq(rc, WEIR_EINVAL, "self-loop: got %s", weir_errname(rc));
    rc = weir_graph_connect(g, sink, t); /* a sink as from */
    cr_expect_eq(rc, WEIR_EINVAL, "sink as from: got %s", weir_errname(rc));
    rc = weir_graph_connect(g, t, src2); /* a source as to */
    cr_expect_eq(rc, WEIR_EINVAL, "source as to: got %s", weir_errname(rc));
    /* The failed connects changed nothing: the graph still runs. */
    conn(g, t, sink);
    conn(g, src2, capture(g, "sink2", 1));
    run_ok(g, NULL);
    expect_seq(0, 0, 4);
    expect_seq(1, 0, 4);
    destroy_graph(g);
}

GTEST(validate_argument_errors)
{
    weir_graph *g = mkgraph();
    weir_node *src = add(g, &rows_src_def, "src");
    int rc = weir_node_set_int(src, "nope", 1);
    cr_expect_eq(rc, WEIR_ENOTFOUND, "unknown: got %s", weir_errname(rc));
    expect_msg(g, "nope");
    rc = weir_node_set_str(src, "batches", "ten");
    cr_expect_eq(rc, WEIR_EINVAL, "string for int: got %s", weir_errname(rc));
    expect_msg(g, "batches");
    rc = weir_node_set_bool(src, "rows", true);
    cr_expect_eq(rc, WEIR_EINVAL, "bool for int: got %s", weir_errname(rc));
    rc = weir_node_set_float(src, "rows", 1.5);
    cr_expect_eq(rc, WEIR_EINVAL, "float for int: got %s", weir_errname(rc));
    rc = weir_node_set_int(src, "endless", 1);
    cr_expect_eq(rc, WEIR_EINVAL, "int for bool: got %s", weir_errname(rc));
    const char *items[] = {"x"};
    rc = weir_node_set_list(src, "batches", items, 1);
    cr_expect_eq(rc, WEIR_EINVAL, "list for int: got %s", weir_errname(rc));
    rc = weir_node_set_float(src, "nope", 1.0);
    cr_expect_eq(rc, WEIR_ENOTFOUND, "unknown float: got %s", weir_errname(rc));
    /* workers > 1 on a serial stage; workers out of range. */
    rc = weir_node_set_int(src, "workers", 2);
    cr_expect_eq(rc, WEIR_EINVAL, "workers=2 on a source: got %s", weir_errname(rc));
    weir_node *ser = add(g, &serial_def, "ser");
    rc = weir_node_set_int(ser, "workers", 2);
    cr_expect_eq(rc, WEIR_EINVAL, "workers=2 on a serial stage: got %s", weir_errname(rc));
    expect_msg(g, "ser");
    cr_expect_eq(weir_node_set_int(ser, "workers", 1), 0, "workers=1 is always fine");
    weir_node *jit = add(g, &jitter_def, "jit");
    rc = weir_node_set_int(jit, "workers", 0);
    cr_expect_eq(rc, WEIR_EINVAL, "workers=0: got %s", weir_errname(rc));
    /* The failed sets left the defaults: the graph runs with them. */
    weir_node *sink = capture(g, "sink", 0);
    conn(g, src, ser);
    conn(g, ser, jit);
    conn(g, jit, sink);
    run_ok(g, NULL);
    expect_seq(0, 0, 1000);
    destroy_graph(g);
}

GTEST(validate_partition_needs_columns)
{
    weir_graph *g = mkgraph();
    weir_node *kd = add(g, &keyed_def, "kd");
    int rc = weir_node_partition(kd, NULL, 0);
    cr_expect_eq(rc, WEIR_EINVAL, "got %s", weir_errname(rc));
    destroy_graph(g);
}

GTEST(validate_required_argument)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 2, 2, 0);
    weir_node *n = add(g, &needy_def, "needs_path");
    conn(g, src, n);
    int rc = weir_graph_run(g, NULL, NULL);
    cr_expect_eq(rc, WEIR_ESPEC, "got %s", weir_errname(rc));
    expect_msg(g, "path");
    expect_msg(g, "needs_path");
    /* Given, it runs. */
    cr_assert_eq(weir_node_set_str(n, "path", "/dev/null"), 0);
    run_ok(g, NULL);
    destroy_graph(g);
}

GTEST(validate_abi_and_process)
{
    weir_graph *g = mkgraph();
    weir_stage_def bad = capture_def;
    bad.abi = WEIR_ABI_VERSION + 1;
    weir_node *n = (weir_node *)(void *)&bad; /* any non-NULL value */
    int rc = weir_graph_add(g, &bad, "bad", &n);
    cr_expect_eq(rc, WEIR_EINVAL, "abi: got %s", weir_errname(rc));
    cr_expect_null(n, "no node on failure");
    expect_msg(g, NULL);
    weir_stage_def noproc = capture_def;
    noproc.process = NULL;
    rc = weir_graph_add(g, &noproc, "noproc", &n);
    cr_expect_eq(rc, WEIR_EINVAL, "no process: got %s", weir_errname(rc));
    /* Nothing was added: an empty graph. */
    rc = weir_graph_run(g, NULL, NULL);
    cr_expect_eq(rc, WEIR_ESPEC);
    destroy_graph(g);
}

/* ======================================================================================== */
/* Stage arguments                                                                          */
/* ======================================================================================== */

static weir_graph *probe_graph(weir_node **probe)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 1, 1, 0);
    *probe = add(g, &probe_def, "probe");
    conn(g, src, *probe);
    return g;
}

GTEST(arguments_defaults)
{
    weir_node *p;
    weir_graph *g = probe_graph(&p);
    run_ok(g, NULL);
    cr_assert_eq(G.probe_opened, 1);
    cr_expect_eq(G.p_int, 42);
    cr_expect_float_eq(G.p_float, 0.5, 1e-12);
    cr_expect_eq(G.p_bool, true);
    cr_expect_str_eq(G.p_str, "hello");
    cr_expect_eq(G.p_nlist, 2);
    cr_expect_str_eq(G.p_list[0], "a");
    cr_expect_str_eq(G.p_list[1], "b");
    cr_expect_float_eq(G.p_float2, 2.25, 1e-12);
    for (int i = 0; i < 6; i++)
        cr_expect_eq(G.p_given[i], false, "'%s' reported given", probe_names[i]);
    cr_expect_eq(G.p_replicas, 1);
    destroy_graph(g);
}

GTEST(arguments_given)
{
    weir_node *p;
    weir_graph *g = probe_graph(&p);
    cr_assert_eq(weir_node_set_int(p, "n", -7), 0);
    cr_assert_eq(weir_node_set_bool(p, "flag", false), 0);
    cr_assert_eq(weir_node_set_str(p, "name", "world"), 0);
    const char *items[] = {"x", "y", "z"};
    cr_assert_eq(weir_node_set_list(p, "cols", items, 3), 0);
    cr_assert_eq(weir_node_set_int(p, "scale", 3), 0, "an int for a float argument");
    run_ok(g, NULL);
    cr_assert_eq(G.probe_opened, 1);
    cr_expect_eq(G.p_int, -7);
    cr_expect_float_eq(G.p_float, 0.5, 1e-12, "ratio keeps its default");
    cr_expect_eq(G.p_bool, false);
    cr_expect_str_eq(G.p_str, "world");
    cr_expect_eq(G.p_nlist, 3);
    cr_expect_str_eq(G.p_list[0], "x");
    cr_expect_str_eq(G.p_list[1], "y");
    cr_expect_str_eq(G.p_list[2], "z");
    cr_expect_float_eq(G.p_float2, 3.0, 1e-12);
    bool want[6] = {true, false, true, true, true, true};
    for (int i = 0; i < 6; i++)
        cr_expect_eq(G.p_given[i], want[i], "'%s' given=%d, expected %d", probe_names[i],
                     G.p_given[i], want[i]);
    destroy_graph(g);
}

GTEST(arguments_set_twice_last_wins)
{
    weir_node *p;
    weir_graph *g = probe_graph(&p);
    cr_assert_eq(weir_node_set_float(p, "ratio", 0.25), 0);
    cr_assert_eq(weir_node_set_float(p, "ratio", 0.75), 0);
    cr_assert_eq(weir_node_set_str(p, "name", "one"), 0);
    cr_assert_eq(weir_node_set_str(p, "name", "two"), 0);
    const char *l1[] = {"p", "q"}, *l2[] = {"r"};
    cr_assert_eq(weir_node_set_list(p, "cols", l1, 2), 0);
    cr_assert_eq(weir_node_set_list(p, "cols", l2, 1), 0);
    run_ok(g, NULL);
    cr_expect_float_eq(G.p_float, 0.75, 1e-12);
    cr_expect_str_eq(G.p_str, "two");
    cr_expect_eq(G.p_nlist, 1);
    cr_expect_str_eq(G.p_list[0], "r");
    cr_expect_eq(G.p_given[1], true);
    destroy_graph(g);
}

GTEST(arguments_copied_at_set_time)
{
    weir_node *p;
    weir_graph *g = probe_graph(&p);
    char name[16] = "mutable";
    char item[8] = "c1";
    const char *items[] = {item};
    cr_assert_eq(weir_node_set_str(p, "name", name), 0);
    cr_assert_eq(weir_node_set_list(p, "cols", items, 1), 0);
    strcpy(name, "changed");
    strcpy(item, "zz");
    run_ok(g, NULL);
    cr_expect_str_eq(G.p_str, "mutable");
    cr_expect_str_eq(G.p_list[0], "c1");
    destroy_graph(g);
}

/* ======================================================================================== */
/* Reruns and launchers                                                                     */
/* ======================================================================================== */

static weir_graph *mixed_graph(weir_node **nodes)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "src", 50, 30, 0);
    weir_node *jit = add(g, &jitter_def, "jit");
    seti(jit, "workers", 3);
    weir_node *var = add(g, &vary_def, "vary");
    seti(var, "workers", 2);
    weir_node *sink = capture(g, "sink", 0);
    conn(g, src, jit);
    conn(g, jit, var);
    conn(g, var, sink);
    nodes[0] = src;
    nodes[1] = jit;
    nodes[2] = var;
    nodes[3] = sink;
    return g;
}

GTEST(same_graph_run_twice)
{
    int64_t *want = tmalloc((50 * 30) * sizeof *want);
    size_t nwant = vary_expected(50, 30, want);
    weir_node *nodes[4];
    weir_graph *g = mixed_graph(nodes);
    weir_node_stats first[4], second[4];
    run_ok(g, NULL);
    expect_ids(0, want, nwant);
    for (int i = 0; i < 4; i++) first[i] = stats(nodes[i]);
    pthread_mutex_lock(&mu);
    G.nids[0] = 0;
    G.rows[0] = 0;
    pthread_mutex_unlock(&mu);
    run_ok(g, NULL);
    expect_ids(0, want, nwant);
    for (int i = 0; i < 4; i++) second[i] = stats(nodes[i]);
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(first[i].rows_in, second[i].rows_in, "node %d: stats are per run", i);
        cr_expect_eq(first[i].rows_out, second[i].rows_out, "node %d", i);
        cr_expect_eq(first[i].batches_in, second[i].batches_in, "node %d", i);
        cr_expect_eq(first[i].batches_out, second[i].batches_out, "node %d", i);
        cr_expect_eq(first[i].replicas, second[i].replicas, "node %d", i);
    }
    cr_expect_eq(second[0].rows_out, 1500);
    cr_expect_eq(second[3].rows_in, nwant);
    cr_expect_eq(G.capture_finished[0], 2);
    tfree(want);
    destroy_graph(g);
}

static void check_launcher(int launcher)
{
    int64_t *want = tmalloc((50 * 30) * sizeof *want);
    size_t nwant = vary_expected(50, 30, want);
    weir_node *nodes[4];
    weir_graph *g = mixed_graph(nodes);
    weir_run_opts o = {.launcher = launcher};
    for (int round = 0; round < 2; round++) {
        pthread_mutex_lock(&mu);
        G.nids[0] = 0;
        G.rows[0] = 0;
        pthread_mutex_unlock(&mu);
        run_ok(g, &o);
        expect_ids(0, want, nwant);
    }
    tfree(want);
    destroy_graph(g);
}

GTEST(launcher_pthread) { check_launcher(WEIR_LAUNCH_PTHREAD); }

/* libgomp is not built with TSan: under `make tsan` (WEIR_LAUNCH=pthread)
 * the OpenMP launcher is exercised by the normal and ASan builds only. */
static int openmp_launcher(void)
{
    const char *env = getenv("WEIR_LAUNCH");
    return env && strcmp(env, "pthread") == 0 ? WEIR_LAUNCH_PTHREAD : WEIR_LAUNCH_OPENMP;
}

GTEST(launcher_openmp) { check_launcher(openmp_launcher()); }

GTEST(launcher_openmp_error_and_early_stop)
{
    weir_run_opts o = {.launcher = openmp_launcher()};
    weir_graph *g = mkgraph();
    weir_node *src = endless_src(g, "src", 10);
    weir_node *f = add(g, &fail_def, "checker");
    seti(f, "at", 555);
    seti(f, "workers", 2);
    weir_node *sink = capture(g, "sink", 0);
    conn(g, src, f);
    conn(g, f, sink);
    int rc = weir_graph_run(g, NULL, &o);
    cr_expect_eq(rc, WEIR_EDATA, "got %s", weir_errname(rc));
    expect_msg(g, "bad row 555");
    destroy_graph(g);

    g = mkgraph();
    src = endless_src(g, "src", 10);
    weir_node *head = add(g, &head_def, "head");
    seti(head, "rows", 25);
    sink = capture(g, "sink", 1);
    conn(g, src, head);
    conn(g, head, sink);
    rc = weir_graph_run(g, NULL, &o);
    cr_expect_eq(rc, 0, "got %s", weir_errname(rc));
    expect_seq(1, 0, 25);
    destroy_graph(g);
}

/* ======================================================================================== */
/* Bytes streams                                                                            */
/* ======================================================================================== */

GTEST(bytes_parallel_pass_through_identical)
{
    unsigned char *want;
    size_t nwant;
    gen_expected(7, 80, &want, &nwant);
    weir_graph *g = mkgraph();
    weir_node *bs = add(g, &bytes_src_def, "bsrc");
    seti(bs, "chunks", 80);
    seti(bs, "seed", 7);
    weir_node *jit = add(g, &jitter_def, "jit");
    seti(jit, "workers", 3);
    weir_node *cat = add(g, &bytes_cat_def, "cat");
    conn(g, bs, jit);
    conn(g, jit, cat);
    run_ok(g, NULL);
    cr_assert_eq(G.nbytes[0], nwant, "got %zu bytes, expected %zu", G.nbytes[0], nwant);
    cr_assert(memcmp(G.bytes[0], want, nwant) == 0, "bytes differ");
    cr_expect_eq(G.rec_bytes, nwant);
    cr_expect_gt(replicas_that_saw_data(), 1);
    weir_node_stats j = stats(jit);
    cr_expect_eq(j.bytes_in, nwant);
    cr_expect_eq(j.bytes_out, nwant);
    cr_expect_eq(j.batches_in, 80);
    cr_expect_eq(j.rows_in, 0);
    cr_expect_eq(stats(cat).bytes_in, nwant);
    cr_expect_eq(stats(bs).bytes_out, nwant);
    tfree(want);
    destroy_graph(g);
}

GTEST(bytes_broadcast_count_and_cat)
{
    unsigned char *want;
    size_t nwant;
    gen_expected(3, 50, &want, &nwant);
    weir_graph *g = mkgraph();
    weir_node *bs = add(g, &bytes_src_def, "bsrc");
    seti(bs, "chunks", 50);
    seti(bs, "seed", 3);
    weir_node *cnt = add(g, &bytes_count_def, "count");
    seti(cnt, "slot", 1);
    weir_node *cat = add(g, &bytes_cat_def, "cat");
    conn(g, bs, cnt);
    conn(g, bs, cat);
    run_ok(g, NULL);
    cr_expect_eq(G.bytecount[1], nwant);
    cr_expect_eq(G.bytebatches[1], 50);
    cr_assert_eq(G.nbytes[0], nwant);
    cr_expect(memcmp(G.bytes[0], want, nwant) == 0, "bytes differ");
    cr_expect_eq(stats(cnt).bytes_in, nwant);
    tfree(want);
    destroy_graph(g);
}

GTEST(bytes_concat_of_two_sources)
{
    unsigned char *wa, *wb;
    size_t na, nb;
    gen_expected(11, 20, &wa, &na);
    gen_expected(12, 30, &wb, &nb);
    weir_graph *g = mkgraph();
    weir_node *a = add(g, &bytes_src_def, "a");
    seti(a, "chunks", 20);
    seti(a, "seed", 11);
    weir_node *b = add(g, &bytes_src_def, "b");
    seti(b, "chunks", 30);
    seti(b, "seed", 12);
    weir_node *c = add(g, weir_stage_find("concat"), "c");
    weir_node *cat = add(g, &bytes_cat_def, "cat");
    conn(g, a, c);
    conn(g, b, c);
    conn(g, c, cat);
    run_ok(g, NULL);
    cr_assert_eq(G.nbytes[0], na + nb);
    cr_expect(memcmp(G.bytes[0], wa, na) == 0, "first input differs");
    cr_expect(memcmp(G.bytes[0] + na, wb, nb) == 0, "second input differs");
    tfree(wa);
    tfree(wb);
    destroy_graph(g);
}

/* ======================================================================================== */
/* Describe                                                                                 */
/* ======================================================================================== */

GTEST(describe_mentions_nodes_and_replicas)
{
    weir_graph *g = mkgraph();
    weir_node *src = rows_src(g, "the_source", 2, 2, 0);
    weir_node *jit = add(g, &jitter_def, "the_jitter");
    seti(jit, "workers", 3);
    weir_node *a = capture(g, "sink_a", 0);
    weir_node *b = capture(g, "sink_b", 1);
    conn(g, src, jit);
    conn(g, jit, a);
    conn(g, src, b);
    char buf[4096];
    size_t need = weir_graph_describe(g, NULL, buf, sizeof buf);
    cr_assert_lt(need, sizeof buf);
    cr_expect_eq(strlen(buf), need);
    const char *labels[] = {"the_source", "the_jitter", "sink_a", "sink_b", "replicas"};
    for (int i = 0; i < 5; i++)
        cr_expect(strstr(buf, labels[i]) != NULL, "describe lacks '%s':\n%s", labels[i], buf);
    /* snprintf-like: the length needed, whatever the buffer. */
    cr_expect_eq(weir_graph_describe(g, NULL, NULL, 0), need);
    char small[8];
    cr_expect_eq(weir_graph_describe(g, NULL, small, sizeof small), need);
    cr_expect_eq(strlen(small), sizeof small - 1, "truncated and terminated");
    /* Describing does not run anything. */
    cr_expect_eq(G.rows[0], 0);
    cr_expect_eq(G.rows[1], 0);
    /* The graph still runs after being described. */
    run_ok(g, NULL);
    expect_seq(0, 0, 4);
    expect_seq(1, 0, 4);
    destroy_graph(g);
}

GTEST(describe_invalid_graph)
{
    weir_graph *g = mkgraph();
    rows_src(g, "src", 2, 2, 0);
    char buf[1024];
    weir_graph_describe(g, NULL, buf, sizeof buf);
    cr_expect(strstr(buf, "never used") != NULL, "describe: %s", buf);
    destroy_graph(g);
}
