/*
 * run.c — expanding the logical graph into the physical one, and running it.
 *
 * Physical pieces:
 *   - instance: one replica of a node, on its own worker thread, running
 *     the stage's callbacks;
 *   - collector: for a node with N > 1 replicas, a worker that gathers the
 *     replicas' output — in source order (reading replica k mod N for the
 *     k-th input group) or as it comes (one shared MPMC channel);
 *   - emitter: what a single instance or a collector sends through. It
 *     broadcasts to every consumer (reference-counted, read-only) and, for
 *     a replicated consumer, distributes: round-robin, or split by key hash.
 *   - pchan: a channel plus the count of producers still attached; the
 *     last producer to finish closes it.
 *   - chaining: when a replicated node's only consumer has as many
 *     replicas and takes its input in order (filter, select, compute after
 *     csv), replica k feeds replica k directly and the upstream has no
 *     collector: the downstream replica carries the upstream's groups on
 *     (END_OF_GROUP where the upstream's group ended, FINAL where its
 *     groups were over), so the last node's collector restores the input
 *     order for the whole chain. A chain needs no thread, no copy and no
 *     serial step per node (weir__node_chained).
 *
 * Termination: end of input closes channels downstream; a consumer that
 * stops early closes its inputs, so upstream sends fail with CLOSED and the
 * producers stop in turn (WEIR_DONE), all the way to the sources. The first
 * stage error cancels the run's context, which wakes every blocked worker.
 */
#include "graph.h"

#include <errno.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Markers: empty batches (fresh from a pool, so never shared) that an
 * ordered replica sends to its collector. END_OF_GROUP may also ride on
 * the group's last batch when nobody else holds it. */
#define WEIR__BATCH_FINAL 0x2u /* the replica's groups are over */

typedef struct pchan {
    weir_chan *ch;
    _Atomic int producers;
    _Atomic size_t bytes; /* what the batches queued in it hold (batch_bytes) */
} pchan;

typedef struct target {
    pchan **ch;        /* one channel, or one per consumer replica */
    int n;
    bool hash;         /* split rows by key hash (else round-robin) */
    int presplit;      /* > 0: n is 1 (a collector's channel), and rows are
                          split by key for `node`'s presplit replicas ahead
                          of it, each part tagged with its replica (dest) */
    bool dead;         /* the consumer stopped taking input */
    uint64_t rr;
    weir_node *node;   /* consumer (for the key columns) */
    const weir_schema *key_schema; /* schema the key indices belong to */
    int *key_idx;
    weir_batch **parts; /* hash: one batch being filled per replica */
    /* The columns the consumer reads (weir_stage_reads), for the input
     * schema proj_of: the parts carry just those. */
    const weir_schema *proj_of;
    weir_schema *proj;  /* NULL: every column */
    uint32_t *proj_idx;
} target;

typedef struct emitter {
    target *t;
    size_t nt, alive;
    uint64_t sent;     /* batches sent so far */
    uint64_t blocked_ns; /* time sends waited for room (with timing on) */
    weir_pool *pool;   /* for split batches and markers */
} emitter;

typedef struct run run;


typedef struct collector {
    run *r;
    weir_node *node;
    weir_stage *sh;    /* its counters and trace track (no callbacks) */
    pchan **in;        /* ordered: one per replica; unordered: one shared */
    int nin;
    bool ordered;
    bool sorted;       /* merge the replicas' sorted streams (one per replica) */
    emitter *out;
} collector;

typedef struct worker {
    weir_stage *inst;  /* either an instance */
    collector *col;    /* or a collector */
} worker;

struct run {
    weir_graph *g;
    weir_ctx *ctx;
    const weir_run_opts *o;
    pthread_mutex_t mu; /* guards err/errmsg */
    int err;
    char errmsg[1024];
    /* Owned resources, freed after the workers have joined. */
    pchan **chans;
    size_t nchans;
    emitter **emitters;
    size_t nemitters;
    weir_pool **pools;  /* per node id */
    weir_pool **extra_pools; /* splitters' */
    size_t nextra_pools;
    weir_stage **insts;
    size_t ninsts;
    collector **cols;
    size_t ncols;
    worker *workers;
    size_t nworkers;
    /* OpenMP launcher: team threads still running a worker. */
    _Atomic size_t team_running;
    weir__ec team_done;
};

/* ---- errors ------------------------------------------------------------------- */

static void run_fail(run *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void run_fail(run *r, int code, const char *fmt, ...)
{
    pthread_mutex_lock(&r->mu);
    bool first = r->err == 0;
    if (first) {
        r->err = code;
        va_list ap;
        va_start(ap, fmt);
        weir__vfmt(r->errmsg, sizeof r->errmsg, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&r->mu);
    if (first) weir_ctx_cancel(r->ctx, code);
}

/* "stage 'NAME'" or "stage 'NAME' (file:line:col)". */
static void stage_where(const weir_node *n, char *buf, size_t size)
{
    if (n->pos.file)
        snprintf(buf, size, "stage '%s' (%s:%u:%u)", n->label, n->pos.file,
                 n->pos.line, n->pos.col);
    else
        snprintf(buf, size, "stage '%s'", n->label);
}

int weir_stage_errorf(weir_stage *s, int code, const char *fmt, ...)
{
    char msg[768], where[256];
    va_list ap;
    va_start(ap, fmt);
    weir__vfmt(msg, sizeof msg, fmt, ap);
    va_end(ap);
    stage_where(s->node, where, sizeof where);
    if (!s->r) { /* plan time: the graph keeps the first message */
        if (!s->node->g->errmsg[0]) weir__graph_errorf(s->node->g, "%s: %s", where, msg);
        return code;
    }
    run_fail(s->r, code, "%s: %s", where, msg);
    return code;
}

weir_pos weir_stage_pos(const weir_stage *s) { return s->node->pos; }

long weir_stage_peek(weir_stage *s, void *buf, size_t size)
{
    const weir_node *n = s->node;
    if (n->ninputs != 1 || !n->inputs[0]->def->peek) return WEIR_ENOTFOUND;
    weir_stage up;
    weir__plan_stage_init(&up, n->inputs[0]);
    return n->inputs[0]->def->peek(&up, buf, size);
}

const weir_expr *weir_stage_arg_expr(const weir_stage *s, const char *name)
{
    return weir__stage_arg(s->node, name, WEIR_ARG_EXPR)->expr;
}

size_t weir_stage_arg_named(const weir_stage *s, const char *name,
                            const char *const **names, const weir_expr *const **exprs)
{
    const weir__arg *a = weir__stage_arg(s->node, name, WEIR_ARG_NAMED);
    *names = (const char *const *)a->names;
    *exprs = (const weir_expr *const *)a->exprs;
    return a->nnamed;
}

/* ---- stage accessors ------------------------------------------------------------ */

size_t weir_stage_mem_budget(const weir_stage *s)
{
    size_t b = s->node->mem_budget / (size_t)(s->nreplicas > 0 ? s->nreplicas : 1);
    return b ? b : 1;
}

const char *weir_stage_tmpdir(const weir_stage *s) { return s->node->tmpdir; }

int64_t weir_stage_arg_int(const weir_stage *s, const char *name)
{
    return weir__stage_arg(s->node, name, WEIR_ARG_INT)->i;
}

double weir_stage_arg_float(const weir_stage *s, const char *name)
{
    return weir__stage_arg(s->node, name, WEIR_ARG_FLOAT)->f;
}

bool weir_stage_arg_bool(const weir_stage *s, const char *name)
{
    return weir__stage_arg(s->node, name, WEIR_ARG_BOOL)->b;
}

const char *weir_stage_arg_str(const weir_stage *s, const char *name)
{
    return weir__stage_arg(s->node, name, WEIR_ARG_STRING)->s;
}

size_t weir_stage_arg_list(const weir_stage *s, const char *name,
                           const char *const **items)
{
    const weir__arg *a = weir__stage_arg(s->node, name, WEIR_ARG_LIST);
    *items = (const char *const *)a->list;
    return a->nlist;
}

bool weir_stage_arg_given(const weir_stage *s, const char *name)
{
    for (size_t i = 0; i < s->node->nargs; i++)
        if (strcmp(s->node->args[i].def->name, name) == 0)
            return s->node->args[i].given;
    return false;
}

void *weir_stage_state(const weir_stage *s) { return s->state; }
void weir_stage_set_state(weir_stage *s, void *state) { s->state = state; }
weir_ctx *weir_stage_ctx(const weir_stage *s) { return s->r->ctx; }
const char *weir_stage_name(const weir_stage *s) { return s->node->label; }
int weir_stage_replica(const weir_stage *s) { return s->replica; }
int weir_stage_replicas(const weir_stage *s) { return s->nreplicas; }

int weir_stage_batch(weir_stage *s, weir_batch **out)
{
    return weir_pool_get(s->pool, out);
}

/* ---- channels ---------------------------------------------------------------------- */

static void pchan_release_producer(pchan *p)
{
    if (atomic_fetch_sub_explicit(&p->producers, 1, memory_order_acq_rel) == 1)
        weir_chan_close(p->ch);
}

/* A consumer that stops early: refuse further input and drop what is
 * buffered. Producers see CLOSED on their next send. */
static void pchan_abandon(pchan *p)
{
    weir_chan_close(p->ch);
    void *item;
    while (weir_chan_try_recv(p->ch, &item) == 0) weir_batch_release(item);
}

/* ---- emitting -------------------------------------------------------------------------- */

/* A key field's hash: eight bytes at a time (a byte loop's multiply
 * chain was most of the split's time), the length mixed in last so that
 * fields cannot run into one another ("ab","c" vs "a","bc"). */
static uint64_t hash_bytes(const unsigned char *p, size_t n, uint64_t h)
{
    const uint64_t k = 0x9e3779b97f4a7c15ull;
    size_t len = n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * k;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) w |= (uint64_t)p[i] << (8 * i);
    h = (h ^ w ^ ((uint64_t)len << 56)) * k;
    return h ^ (h >> 32);
}

static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static int target_keys(run *r, target *t, const weir_batch *b)
{
    if (t->key_schema == b->schema && t->key_idx) return 0;
    weir_node *d = t->node;
    int *idx = realloc(t->key_idx, d->npart * sizeof *idx);
    if (!idx) return WEIR_ENOMEM;
    t->key_idx = idx;
    for (size_t k = 0; k < d->npart; k++) {
        int c = b->schema ? weir_schema_find(b->schema, d->part[k]) : WEIR_ENOTFOUND;
        if (c < 0) {
            run_fail(r, WEIR_ESPEC, "stage '%s': no column '%s' to partition by",
                     d->label, d->part[k]);
            return WEIR_ESPEC;
        }
        idx[k] = c;
    }
    t->key_schema = b->schema;
    return 0;
}

static void target_kill(target *t)
{
    t->dead = true;
    for (int i = 0; i < t->n; i++) weir_chan_close(t->ch[i]->ch);
}

/* The memory a batch holds, for a channel's byte bound: its arena and its
 * field slices as allocated (a batch from a pool keeps what it grew to). */
static size_t batch_bytes(const weir_batch *b)
{
    return b->cap + b->fields_cap * sizeof(weir_field);
}

/* A receiver took b from p. */
static inline void pchan_took(pchan *p, const weir_batch *b)
{
    atomic_fetch_sub_explicit(&p->bytes, batch_bytes(b), memory_order_relaxed);
}

/* Send b into p, counting only the time it waits for room as blocked:
 * splitting rows by key, or anything else an emitter does, is work. A
 * channel holds up to its capacity in batches, but once what is queued
 * holds WEIR__CHAN_BYTES or more, a sender waits until fewer than two
 * batches are queued: big batches are double-buffered, small ones get the
 * whole capacity. */
static int emit_into(run *r, emitter *e, pchan *p, weir_batch *b)
{
    weir_chan *ch = p->ch;
    size_t sz = batch_bytes(b);
    uint64_t t0 = 0;
    int rc = 0;
    if (atomic_load_explicit(&p->bytes, memory_order_relaxed) >= WEIR__CHAN_BYTES &&
        weir_chan_len(ch) >= 2) {
        if (!r->o->no_timing) t0 = weir_now_ns();
        rc = weir__chan_wait_below(ch, 2, r->ctx);
        if (rc) {
            if (t0) e->blocked_ns += weir_now_ns() - t0;
            return rc;
        }
    }
    atomic_fetch_add_explicit(&p->bytes, sz, memory_order_relaxed);
    rc = weir_chan_try_send(ch, b);
    if (rc == WEIR_EAGAIN) {
        if (!t0 && !r->o->no_timing) t0 = weir_now_ns();
        rc = weir_chan_send(ch, b, r->ctx);
    }
    if (t0) e->blocked_ns += weir_now_ns() - t0;
    if (rc) atomic_fetch_sub_explicit(&p->bytes, sz, memory_order_relaxed);
    return rc;
}

/* The consumer's columns in b's schema (t->proj, NULL: all of them, or
 * one it does not declare is missing). */
static int target_proj(target *t, const weir_batch *b)
{
    const weir_node *y = t->node;
    if (!y->has_reads || t->proj_of == b->schema) return 0;
    weir_schema_release(t->proj);
    t->proj = NULL;
    t->proj_of = b->schema;
    if (!b->schema || y->nreads >= b->ncols) return 0;
    uint32_t *idx = realloc(t->proj_idx, (y->nreads ? y->nreads : 1) * sizeof *idx);
    if (!idx) return WEIR_ENOMEM;
    t->proj_idx = idx;
    for (size_t k = 0; k < y->nreads; k++) {
        int c = weir_schema_find(b->schema, y->reads[k]);
        if (c < 0) return 0; /* the stage will say so itself */
        idx[k] = (uint32_t)c;
    }
    return weir_schema_create(&t->proj, y->reads, y->nreads);
}

/* Split b's rows by key hash of t->node's partition columns into np
 * parts (t->parts, fresh batches from e's pool), each with just the
 * columns the consumer reads. Does not consume b. */
static int split_by_key(run *r, emitter *e, target *t, const weir_batch *b, int np)
{
    int rc = target_keys(r, t, b);
    if (rc == 0) rc = target_proj(t, b);
    weir_batch **part = t->parts;
    for (uint32_t row = 0; rc == 0 && row < b->nrows; row++) {
        uint64_t h = 0xcbf29ce484222325ull;
        for (size_t k = 0; k < t->node->npart; k++) {
            size_t len;
            const unsigned char *f = weir_batch_field(b, row, (uint32_t)t->key_idx[k], &len);
            h = hash_bytes(f, len, h);
        }
        /* Range reduction by a multiply, not a division. */
        int dst = (int)(((unsigned __int128)mix64(h) * (uint64_t)np) >> 64);
        if (!part[dst]) {
            rc = weir_pool_get(e->pool, &part[dst]);
            if (rc == 0) rc = weir_batch_set_schema(part[dst], t->proj ? t->proj : b->schema);
            if (rc) break;
            part[dst]->seq = b->seq;
            part[dst]->origin = b->origin;
            part[dst]->offset = b->offset;
            part[dst]->line = b->line;
        }
        rc = t->proj ? weir__batch_copy_cols(part[dst], b, row, t->proj_idx, part[dst]->ncols)
                     : weir_batch_copy_row(part[dst], b, row);
    }
    if (rc == WEIR_ENOMEM)
        run_fail(r, rc, "stage '%s': out of memory splitting rows by key", t->node->label);
    return rc;
}

/* Ahead of a collector: split b by key, send the parts in replica order,
 * each tagged with its replica; the group's end (END_OF_GROUP) rides on
 * the last. Consumes b. */
static int target_presplit(run *r, emitter *e, target *t, weir_batch *b)
{
    int np = t->presplit;
    int rc = split_by_key(r, e, t, b, np);
    uint32_t end = b->flags & WEIR_BATCH_END_OF_GROUP;
    weir_batch_release(b);
    int last = -1;
    for (int i = 0; i < np; i++)
        if (t->parts[i]) last = i;
    for (int i = 0; i < np; i++) {
        weir_batch *p = t->parts[i];
        t->parts[i] = NULL;
        if (!p) continue;
        p->dest = (uint32_t)i + 1;
        if (i == last) p->flags |= end;
        if (rc == 0) {
            rc = emit_into(r, e, t->ch[0], p);
            if (rc == 0) continue;
        }
        weir_batch_release(p);
    }
    if (rc == WEIR_ECLOSED) target_kill(t);
    return rc;
}

/* Send one reference of b to one consumer. Consumes that reference. */
static int target_send(run *r, emitter *e, target *t, weir_batch *b)
{
    int rc;
    if (t->presplit && b->nrows > 0) return target_presplit(r, e, t, b);
    if (t->n == 1) {
        rc = emit_into(r, e, t->ch[0], b);
    } else if (!t->hash) {
        rc = emit_into(r, e, t->ch[t->rr++ % (uint64_t)t->n], b);
    } else {
        /* Split the rows among the replicas by key hash. */
        if (b->nrows == 0) {
            /* A schema-only batch has no key to hash: every replica gets
             * it, so each learns the columns (the collector passes on the
             * first only). */
            if (t->n > 1) __atomic_fetch_add(&b->refs, t->n - 1, __ATOMIC_RELAXED);
            rc = 0;
            for (int i = 0; i < t->n; i++) {
                int src = rc ? rc : emit_into(r, e, t->ch[i], b);
                if (src) weir_batch_release(b);
                rc = src;
            }
            if (rc == WEIR_ECLOSED) target_kill(t);
            return rc;
        }
        if (b->dest && b->dest <= (uint32_t)t->n && !weir_batch_shared(b)) {
            /* Split ahead of the collector that sends it here. */
            int i = (int)b->dest - 1;
            b->dest = 0;
            rc = emit_into(r, e, t->ch[i], b);
            if (rc == WEIR_ECLOSED) target_kill(t);
            return rc;
        }
        int np = t->n;
        rc = split_by_key(r, e, t, b, np);
        weir_batch_release(b);
        for (int i = 0; i < np; i++) {
            weir_batch *p = t->parts[i];
            t->parts[i] = NULL;
            if (!p) continue;
            if (rc == 0) {
                rc = emit_into(r, e, t->ch[i], p);
                if (rc == 0) continue;
            }
            weir_batch_release(p);
        }
        if (rc == WEIR_ECLOSED) target_kill(t);
        return rc;
    }
    if (rc) {
        weir_batch_release(b);
        if (rc == WEIR_ECLOSED) target_kill(t);
    }
    return rc;
}

/* Broadcast b to every live consumer. Consumes b.
 * @return 0, WEIR_DONE when nobody listens any more, or a context error. */
static int emitter_send(run *r, emitter *e, weir_batch *b)
{
    /* b may be shared (a broadcast passed on): never write to it here. */
    e->sent++;
    if (e->alive == 0) {
        weir_batch_release(b);
        return WEIR_DONE;
    }
    size_t left = e->alive;
    if (left > 1) __atomic_fetch_add(&b->refs, (int)left - 1, __ATOMIC_RELAXED);
    int err = 0;
    for (size_t i = 0; i < e->nt && left; i++) {
        target *t = &e->t[i];
        if (t->dead) continue;
        left--;
        if (err) { /* cancelled: just drop our references */
            weir_batch_release(b);
            continue;
        }
        int rc = target_send(r, e, t, b);
        if (rc == WEIR_ECLOSED) e->alive--;
        else if (rc < 0) err = rc;
    }
    if (err) return err;
    return e->alive ? 0 : WEIR_DONE;
}

static void emitter_close(emitter *e)
{
    for (size_t i = 0; i < e->nt; i++)
        for (int k = 0; k < e->t[i].n; k++) pchan_release_producer(e->t[i].ch[k]);
}

static bool batch_empty(const weir_batch *b)
{
    return b->kind == WEIR_KIND_ROWS ? b->nrows == 0 : b->len == 0;
}

static void count_in(weir_stage *s, const weir_batch *b)
{
    WEIR__CNT_ADD(s->st.batches_in, 1);
    WEIR__CNT_ADD(s->st.rows_in, b->nrows);
    WEIR__CNT_ADD(s->st.bytes_in, b->len);
}

static void count_out(weir_stage *s, const weir_batch *b)
{
    WEIR__CNT_ADD(s->st.batches_out, 1);
    WEIR__CNT_ADD(s->st.rows_out, b->nrows);
    WEIR__CNT_ADD(s->st.bytes_out, b->len);
}

void weir__track_add(weir__track *t, int kind, uint64_t start, uint64_t end)
{
    if (t->n == t->cap) {
        /* Bounded: a long run keeps its first million spans per worker. */
        size_t cap = t->cap ? t->cap * 2 : 4096;
        weir__span *ns = cap <= ((size_t)1 << 20) ? realloc(t->spans, cap * sizeof *ns) : NULL;
        if (!ns) {
            t->dropped++;
            return;
        }
        t->spans = ns;
        t->cap = cap;
    }
    t->spans[t->n++] = (weir__span){start, end, kind};
}

/* The clock, unless the run was asked not to time (then 0: times stay 0). */
static inline uint64_t now_if(const weir_stage *s)
{
    return s->r->o->no_timing ? 0 : weir_now_ns();
}

/* Time spent blocked counts, and is traced, from a microsecond up: shorter
 * waits are the channel's fast path, not a wait. */
static void note_wait(weir_stage *s, _Atomic uint64_t *total, int kind, uint64_t t0, uint64_t t1)
{
    WEIR__CNT_ADD(*total, t1 - t0);
    if (s->track && t1 - t0 >= 1000) weir__track_add(s->track, kind, t0, t1);
}

/* Run one callback, counting its time as busy less what it spent blocked
 * sending (which emit counts as wait_out). */
#define TIMED_CALL(s, call)                                                         \
    ({                                                                              \
        uint64_t t0_ = now_if(s), w0_ = (s)->wait_out_mirror;                       \
        int rc_ = (call);                                                           \
        uint64_t t1_ = now_if(s);                                                   \
        WEIR__CNT_ADD((s)->st.busy_ns, (t1_ - t0_) - ((s)->wait_out_mirror - w0_)); \
        if ((s)->track) weir__track_add((s)->track, WEIR__SPAN_PROCESS, t0_, t1_);  \
        rc_;                                                                        \
    })

void weir_stage_progress(weir_stage *s, uint64_t done, uint64_t total)
{
    if (!s->r) return; /* plan time */
    atomic_store_explicit(&s->st.progress_done, done, memory_order_relaxed);
    atomic_store_explicit(&s->st.progress_total, total, memory_order_relaxed);
}

void weir_stage_waited_out(weir_stage *s, uint64_t t0_ns, uint64_t t1_ns)
{
    if (!s->r || s->r->o->no_timing || t1_ns <= t0_ns) return;
    s->wait_out_mirror += t1_ns - t0_ns;
    note_wait(s, &s->st.wait_out_ns, WEIR__SPAN_WAIT_OUT, t0_ns, t1_ns);
}

int weir_stage_emit(weir_stage *s, weir_batch *b)
{
    if (s->downstream_gone) {
        weir_batch_release(b);
        return WEIR_DONE;
    }
    /* Empty batches carry nothing — except the first of a rows stream,
     * which tells downstream the columns when there are no rows at all
     * (a CSV file with only a header still writes its header). */
    uint64_t nout = atomic_load_explicit(&s->st.batches_out, memory_order_relaxed);
    if (batch_empty(b) && !(b->kind == WEIR_KIND_ROWS && b->schema && nout == 0)) {
        weir_batch_release(b);
        return 0;
    }
    if (s->def->in_kind == WEIR_KIND_NONE && !weir_batch_shared(b))
        b->seq = nout; /* a source numbers its batches */
    count_out(s, b);
    if (s->ordered_replica && !s->in_finish && !s->after_final) {
        /* Hold the newest batch back: only when process() returns do we know
         * which one ends the group. */
        weir_batch *prev = s->pending;
        s->pending = b;
        if (!prev) return 0;
        b = prev;
    }
    uint64_t w0 = s->out->blocked_ns;
    int rc = emitter_send(s->r, s->out, b);
    uint64_t w = s->out->blocked_ns - w0;
    if (w) { /* waiting for room downstream; the split itself is work */
        uint64_t t1 = now_if(s);
        s->wait_out_mirror += w;
        note_wait(s, &s->st.wait_out_ns, WEIR__SPAN_WAIT_OUT, t1 - w, t1);
    }
    if (rc == WEIR_DONE) s->downstream_gone = true;
    return rc;
}

/* Send an empty marker batch with flag to the collector. */
static int send_marker(weir_stage *s, uint32_t flag)
{
    weir_batch *m;
    int rc = weir_pool_get(s->pool, &m);
    if (rc) return weir_stage_errorf(s, rc, "out of memory");
    m->flags = flag;
    rc = emitter_send(s->r, s->out, m);
    if (rc == WEIR_DONE) s->downstream_gone = true;
    return rc;
}

/* Ordered replica: close the group opened by the last input batch. The
 * flag rides on the group's last batch, unless that batch is shared. */
static int end_group(weir_stage *s)
{
    weir_batch *b = s->pending;
    s->pending = NULL;
    if (b && !weir_batch_shared(b)) {
        b->flags |= WEIR_BATCH_END_OF_GROUP;
        int rc = emitter_send(s->r, s->out, b);
        if (rc == WEIR_DONE) s->downstream_gone = true;
        return rc;
    }
    if (b) {
        int rc = emitter_send(s->r, s->out, b);
        if (rc) {
            if (rc == WEIR_DONE) s->downstream_gone = true;
            return rc;
        }
    }
    return send_marker(s, WEIR_BATCH_END_OF_GROUP);
}

/* ---- workers --------------------------------------------------------------------------- */

static bool is_ctx_err(int rc)
{
    return rc == WEIR_ECANCELED || rc == WEIR_EDEADLINE;
}

/* Turn a callback's result into the run's error, if it is a new one. */
static void note_result(weir_stage *s, int rc, const char *what)
{
    if (rc >= 0) return;
    if (is_ctx_err(rc) && weir_ctx_done(s->r->ctx)) return; /* a consequence */
    char where[256];
    stage_where(s->node, where, sizeof where);
    run_fail(s->r, rc, "%s: %s failed: %s", where, what, weir_strerror(rc));
}

/* A chained replica's input: its upstream replica's groups, END_OF_GROUP
 * on a group's last batch (or an empty marker), then a FINAL marker and
 * the upstream's finish() output. Each upstream group becomes one group
 * here, so the order the collector restores is the input's. */
static int process_chained(weir_stage *s, weir_batch *b)
{
    uint32_t fl = b->flags & (WEIR_BATCH_END_OF_GROUP | WEIR__BATCH_FINAL);
    if (fl & WEIR__BATCH_FINAL) {
        weir_batch_release(b);
        if (s->after_final) return 0;
        s->after_final = true; /* what follows is not in groups */
        return send_marker(s, WEIR__BATCH_FINAL);
    }
    if (fl) b->flags &= ~fl; /* a flag rides only on a batch nobody shares */
    int rc = 0;
    if (batch_empty(b) && !(b->kind == WEIR_KIND_ROWS && b->schema)) {
        weir_batch_release(b); /* a marker */
    } else {
        count_in(s, b);
        rc = TIMED_CALL(s, s->def->process(s, b));
    }
    if (s->after_final) return rc;
    if ((rc == 0 && fl) || rc == WEIR_DONE) {
        int erc = end_group(s);
        if (rc == 0) rc = erc;
    } else if (rc) {
        weir_batch_release(s->pending);
        s->pending = NULL;
    }
    return rc;
}

static int process_one(weir_stage *s, weir_batch *b)
{
    if (s->chained_in) return process_chained(s, b);
    count_in(s, b);
    int rc = TIMED_CALL(s, s->def->process(s, b));
    if (s->ordered_replica) {
        if (rc == 0 || rc == WEIR_DONE) {
            int erc = end_group(s);
            if (rc == 0) rc = erc;
        } else {
            weir_batch_release(s->pending);
            s->pending = NULL;
        }
    }
    return rc;
}

static int instance_loop(weir_stage *s)
{
    const weir_stage_def *d = s->def;
    if (d->in_kind == WEIR_KIND_NONE) {
        for (;;) {
            if (weir_ctx_done(s->r->ctx)) return weir_ctx_err(s->r->ctx);
            int rc = TIMED_CALL(s, d->process(s, NULL));
            if (rc) return rc;
        }
    }
    enum { BURST = 16 };
    void *items[BURST];
    for (size_t port = 0; port < s->nin; port++) {
        for (;;) {
            uint64_t t0 = now_if(s);
            long n = weir_chan_recv_many(s->in[port]->ch, items, BURST, s->r->ctx);
            note_wait(s, &s->st.wait_in_ns, WEIR__SPAN_WAIT_IN, t0, now_if(s));
            if (n == WEIR_ECLOSED) break;
            if (n < 0) return (int)n;
            for (long i = 0; i < n; i++) pchan_took(s->in[port], items[i]);
            for (long i = 0; i < n; i++) {
                int rc = process_one(s, items[i]);
                if (rc) {
                    for (long k = i + 1; k < n; k++) weir_batch_release(items[k]);
                    return rc;
                }
            }
        }
    }
    return 0;
}

static void instance_main(weir_stage *s)
{
    const weir_stage_def *d = s->def;
    s->opened = true;
    int rc = d->open ? TIMED_CALL(s, d->open(s)) : 0;
    if (rc < 0) note_result(s, rc, "open");
    if (rc == 0) {
        rc = instance_loop(s);
        if (rc < 0) note_result(s, rc, "process");
        /* A cancelled run closes channels as its stages stop, so an input
         * may end early: that is not the end of the data, and finish()
         * must not act on it. */
        if (weir_ctx_done(s->r->ctx) && rc >= 0) rc = weir_ctx_err(s->r->ctx);
        if (s->pending) { /* a chained input ended inside a group: a failure */
            weir_batch_release(s->pending);
            s->pending = NULL;
        }
        if ((rc == 0 || rc == WEIR_DONE) && !s->downstream_gone && s->ordered_replica &&
            !s->after_final)
            send_marker(s, WEIR__BATCH_FINAL); /* what follows is finish()'s */
        if ((rc == 0 || rc == WEIR_DONE) && !s->downstream_gone && d->finish) {
            s->in_finish = true;
            int frc = TIMED_CALL(s, d->finish(s));
            if (frc < 0) note_result(s, frc, "finish");
        }
    }
    /* Stop taking input (upstream sees CLOSED) and release our outputs. */
    for (size_t i = 0; i < s->nin; i++) pchan_abandon(s->in[i]);
    emitter_close(s->out);
    atomic_store_explicit(&s->st.finished, 1, memory_order_relaxed);
}

/* Send b on, counting it and the time the send waited for room. */
static int collector_send(collector *c, weir_batch *b)
{
    weir_stage *sh = c->sh;
    count_out(sh, b);
    uint64_t w0 = c->out->blocked_ns;
    int rc = emitter_send(c->r, c->out, b);
    uint64_t w = c->out->blocked_ns - w0;
    if (w) {
        uint64_t t1 = now_if(sh);
        note_wait(sh, &sh->st.wait_out_ns, WEIR__SPAN_WAIT_OUT, t1 - w, t1);
    }
    return rc;
}

/* Receive from one replica's (or the shared) channel, counting the wait. */
static int collector_recv(collector *c, pchan *p, void **item)
{
    weir_stage *sh = c->sh;
    uint64_t t0 = now_if(sh);
    int rc = weir_chan_recv(p->ch, item, c->r->ctx);
    note_wait(sh, &sh->st.wait_in_ns, WEIR__SPAN_WAIT_IN, t0, now_if(sh));
    if (rc == 0) {
        const weir_batch *b = *item;
        pchan_took(p, b);
        count_in(sh, b);
    }
    return rc;
}

static int collector_forward(collector *c, weir_batch *b)
{
    if (!weir_batch_shared(b)) b->flags = 0; /* flags ride only on our own */
    /* Markers are empty; so is a rows stream's schema-only first batch,
     * which goes on if nothing went before it (see weir_stage_emit). */
    if (batch_empty(b) && !(b->kind == WEIR_KIND_ROWS && b->schema && c->out->sent == 0)) {
        weir_batch_release(b);
        return 0;
    }
    return collector_send(c, b);
}

/* The next non-empty batch from replica r's channel, or NULL once it is
 * closed. An empty batch with a schema is kept in *schema_only (the first
 * one) in case the whole output is empty. */
static int merge_fetch(collector *c, int r, weir_batch **out, weir_batch **schema_only)
{
    for (;;) {
        void *item;
        int rc = collector_recv(c, c->in[r], &item);
        if (rc == WEIR_ECLOSED) {
            *out = NULL;
            return 0;
        }
        if (rc) return rc;
        weir_batch *b = item;
        if (!batch_empty(b)) {
            *out = b;
            return 0;
        }
        if (!*schema_only && b->kind == WEIR_KIND_ROWS && b->schema) *schema_only = b;
        else weir_batch_release(b);
    }
}

/* Sorted: every replica's stream is in def->compare order; a k-way merge
 * (replica index breaks ties, so the result is deterministic) keeps the
 * whole output in order. */
static int collector_merge(collector *c)
{
    int n = c->nin, rc = 0;
    weir_batch **head = calloc((size_t)n, sizeof *head);
    uint32_t *pos = calloc((size_t)n, sizeof *pos);
    weir_batch *out = NULL, *schema_only = NULL;
    weir_stage h;
    weir__plan_stage_init(&h, c->node);
    if (!head || !pos) rc = WEIR_ENOMEM;
    for (int r = 0; rc == 0 && r < n; r++) rc = merge_fetch(c, r, &head[r], &schema_only);
    while (rc == 0) {
        int best = -1;
        for (int r = 0; r < n; r++) {
            if (!head[r]) continue;
            if (best < 0 || c->node->def->compare(&h, head[r], pos[r], head[best], pos[best]) < 0)
                best = r;
        }
        if (best < 0) break;
        if (!out) {
            if ((rc = weir_pool_get(c->out->pool, &out))) break;
            weir_batch_set_schema(out, head[best]->schema);
        }
        if ((rc = weir_batch_copy_row(out, head[best], pos[best]))) break;
        if (++pos[best] == head[best]->nrows) {
            weir_batch_release(head[best]);
            pos[best] = 0;
            rc = merge_fetch(c, best, &head[best], &schema_only);
        }
        if (rc == 0 && out->nrows >= 4096) {
            rc = collector_send(c, out);
            out = NULL;
        }
    }
    if (rc == 0 && out) {
        rc = collector_send(c, out);
        out = NULL;
    }
    if (rc == 0 && schema_only && c->out->sent == 0) {
        rc = collector_send(c, schema_only);
        schema_only = NULL;
    }
    weir_batch_release(out);
    weir_batch_release(schema_only);
    for (int r = 0; head && r < n; r++) weir_batch_release(head[r]);
    free(head);
    free(pos);
    if (rc == WEIR_ENOMEM)
        run_fail(c->r, rc, "collector of '%s': out of memory merging sorted output",
                 c->node->label);
    return rc;
}

static int collector_loop(collector *c)
{
    weir_ctx *ctx = c->r->ctx;
    void *item;
    if (c->sorted) return collector_merge(c);
    if (!c->ordered) {
        enum { BURST = 16 };
        void *items[BURST];
        weir_stage *sh = c->sh;
        for (;;) {
            uint64_t t0 = now_if(sh);
            long n = weir_chan_recv_many(c->in[0]->ch, items, BURST, ctx);
            note_wait(sh, &sh->st.wait_in_ns, WEIR__SPAN_WAIT_IN, t0, now_if(sh));
            if (n == WEIR_ECLOSED) return 0;
            if (n < 0) return (int)n;
            for (long i = 0; i < n; i++) {
                const weir_batch *b = items[i];
                pchan_took(c->in[0], b);
                count_in(sh, b);
                int rc = collector_forward(c, items[i]);
                if (rc) {
                    for (long k = i + 1; k < n; k++) weir_batch_release(items[k]);
                    return rc;
                }
            }
        }
    }
    /* Ordered: group k is on replica k mod N, each group ends with
     * END_OF_GROUP. The first replica found at its FINAL marker (or closed)
     * instead of at its group means the groups are over; then each
     * replica's finish() output follows, replica by replica. */
    int final_r = -1;
    for (uint64_t k = 0;;) {
        int r = (int)(k % (uint64_t)c->nin);
        int rc = collector_recv(c, c->in[r], &item);
        if (rc == WEIR_ECLOSED) break;
        if (rc) return rc;
        weir_batch *b = item;
        if (b->flags & WEIR__BATCH_FINAL) {
            weir_batch_release(b);
            final_r = r;
            break;
        }
        bool end = b->flags & WEIR_BATCH_END_OF_GROUP;
        rc = collector_forward(c, b);
        if (rc) return rc;
        if (end) k++;
    }
    /* Only finish() output is left to pass on: it follows each replica's
     * FINAL marker. A group still queued before that marker lies beyond
     * the first missing one (its replica ended early: WEIR_DONE or an
     * error) and cannot be delivered in order, so it is dropped. */
    for (int r = 0; r < c->nin; r++) {
        bool final_seen = r == final_r;
        for (;;) {
            int rc = collector_recv(c, c->in[r], &item);
            if (rc == WEIR_ECLOSED) break;
            if (rc) return rc;
            weir_batch *b = item;
            if (b->flags & WEIR__BATCH_FINAL) final_seen = true;
            if (!final_seen) {
                weir_batch_release(b);
                continue;
            }
            rc = collector_forward(c, b);
            if (rc) return rc;
        }
    }
    return 0;
}

static void collector_main(collector *c)
{
    weir_stage *sh = c->sh;
    uint64_t t0 = now_if(sh);
    int rc = collector_loop(c);
    /* Busy: all of its time but its waits (ordering, merging, splitting
     * rows by key for the consumer). */
    uint64_t all = now_if(sh) - t0,
             waits = atomic_load_explicit(&sh->st.wait_in_ns, memory_order_relaxed) +
                     atomic_load_explicit(&sh->st.wait_out_ns, memory_order_relaxed);
    WEIR__CNT_ADD(sh->st.busy_ns, all > waits ? all - waits : 0);
    atomic_store_explicit(&sh->st.finished, 1, memory_order_relaxed);
    if (rc < 0 && !(is_ctx_err(rc) && weir_ctx_done(c->r->ctx)))
        run_fail(c->r, rc, "collector of '%s': %s", c->node->label, weir_strerror(rc));
    for (int i = 0; i < c->nin; i++) pchan_abandon(c->in[i]);
    emitter_close(c->out);
}

static void worker_main(worker *w)
{
    if (w->inst) instance_main(w->inst);
    else collector_main(w->col);
}

/* ---- building the physical graph ------------------------------------------------------------ */

#define PUSH(arr, n, x)                                                       \
    do {                                                                      \
        void *np_ = realloc((arr), ((n) + 1) * sizeof *(arr));                \
        if (!np_) return WEIR_ENOMEM;                                         \
        (arr) = np_;                                                          \
        (arr)[(n)++] = (x);                                                   \
    } while (0)

static int new_pchan(run *r, pchan **out, int producers, bool mpmc, size_t cap)
{
    pchan *p = calloc(1, sizeof *p);
    if (!p) return WEIR_ENOMEM;
    int rc = weir_chan_create(&p->ch, cap, mpmc ? WEIR_CHAN_MPMC : WEIR_CHAN_SPSC);
    if (rc) {
        free(p);
        return rc;
    }
    atomic_init(&p->producers, producers);
    PUSH(r->chans, r->nchans, p);
    *out = p;
    return 0;
}

static int new_emitter(run *r, emitter **out, weir_pool *pool)
{
    emitter *e = calloc(1, sizeof *e);
    if (!e) return WEIR_ENOMEM;
    e->pool = pool;
    PUSH(r->emitters, r->nemitters, e);
    *out = e;
    return 0;
}

static int emitter_add(emitter *e, pchan **ch, int n, bool hash, weir_node *node)
{
    target *nt = realloc(e->t, (e->nt + 1) * sizeof *nt);
    if (!nt) return WEIR_ENOMEM;
    e->t = nt;
    pchan **copy = malloc((size_t)n * sizeof *copy);
    if (!copy) return WEIR_ENOMEM;
    memcpy(copy, ch, (size_t)n * sizeof *copy);
    weir_batch **parts = NULL;
    if (hash && !(parts = calloc((size_t)n, sizeof *parts))) {
        free(copy);
        return WEIR_ENOMEM;
    }
    e->t[e->nt++] = (target){.ch = copy, .n = n, .hash = hash, .node = node,
                             .parts = parts};
    e->alive++;
    return 0;
}

/* A replica's one channel to its collector, with its rows split by key
 * for keyed (hash-split, nparts replicas) ahead of it: the split runs on
 * every replica instead of on the collector's one thread. */
static int emitter_add_presplit(emitter *e, pchan *ch, int nparts, weir_node *keyed)
{
    WEIR__TRY(emitter_add(e, &ch, 1, false, keyed));
    target *t = &e->t[e->nt - 1];
    if (!(t->parts = calloc((size_t)nparts, sizeof *t->parts))) return WEIR_ENOMEM;
    t->presplit = nparts;
    return 0;
}

/* Do x's replicas split their rows by key for x's consumer ahead of x's
 * collector? When that collector has one consumer, hash-split, and passes
 * batches on whole (not a sorted merge). */
static bool presplit_for(const weir_node *x)
{
    if (x->replicas < 2 || x->out_kind != WEIR_KIND_ROWS || x->noutputs != 1 ||
        (x->def->flags & WEIR_STAGE_SORTED_OUT))
        return false;
    const weir_node *y = x->outputs[0];
    return y->replicas > 1 && y->npart > 0;
}

/* The collector x's replicas would have is an ordered one. */
static bool ordered_collector(const weir_node *x)
{
    return !(x->def->flags & (WEIR_STAGE_SORTED_OUT | WEIR_STAGE_MULTI_IN)) && x->ordered &&
           !x->npart;
}

bool weir__node_chained(const weir_node *x)
{
    if (x->replicas < 2 || x->out_kind == WEIR_KIND_NONE || x->noutputs != 1) return false;
    const weir_node *y = x->outputs[0];
    if (y->replicas != x->replicas || y->ninputs != 1 || y->out_kind == WEIR_KIND_NONE ||
        y->def->splitter || !ordered_collector(x) || !ordered_collector(y))
        return false;
    /* Both with finish() output would interleave it differently: x's
     * finish output comes replica by replica, each then through y. */
    if (x->def->finish && y->def->finish) return false;
    /* For comparison (bench/): every replicated node through a collector. */
    const char *no = getenv("WEIR_NO_CHAIN");
    return !(no && *no && strcmp(no, "0") != 0);
}

/* Per node: the channels of each input port (1 per port, or 1 per replica
 * for a replicated node's single port). */
typedef struct ports {
    pchan ***port;  /* [ninputs][nch] */
    int nch;        /* channels per port */
} ports;

static int build(run *r, weir_node **order, size_t n, ports *pt)
{
    size_t cap = r->o->chan_capacity ? r->o->chan_capacity : WEIR__CHAN_CAPACITY;
    /* Pools, instances, input channels. */
    for (size_t i = 0; i < n; i++) {
        weir_node *x = order[i];
        int R = x->replicas;
        if (x->out_kind != WEIR_KIND_NONE) {
            size_t keep = cap * (x->noutputs + 1) * (size_t)R + 8;
            int rc = weir_pool_create(&r->pools[x->id], x->out_kind, keep, 0);
            if (rc) return rc;
        }
        ports *p = &pt[x->id];
        p->port = calloc(x->ninputs ? x->ninputs : 1, sizeof *p->port);
        if (!p->port) return WEIR_ENOMEM;
        bool merge = (x->def->flags & WEIR_STAGE_MULTI_IN) &&
                     !(x->def->flags & WEIR_STAGE_SEQ_IN);
        const weir_stage_def *sd = x->def->splitter;
        if (sd && (x->ninputs != 1 || sd->process == NULL)) sd = NULL;
        /* With a splitter, upstream feeds it one channel; it feeds the
         * replicas theirs (made below). */
        int nch = sd ? 1 : R;
        p->nch = nch;
        pchan *shared = NULL;
        if (merge && x->ninputs)
            WEIR__TRY(new_pchan(r, &shared, (int)x->ninputs, true, cap));
        for (size_t k = 0; k < x->ninputs; k++) {
            p->port[k] = calloc((size_t)nch, sizeof **p->port);
            if (!p->port[k]) return WEIR_ENOMEM;
            for (int q = 0; q < nch; q++) {
                if (shared) p->port[k][q] = shared;
                else WEIR__TRY(new_pchan(r, &p->port[k][q], 1, false, cap));
            }
        }
        for (int q = 0; q < R; q++) {
            weir_stage *s = calloc(1, sizeof *s);
            if (!s) return WEIR_ENOMEM;
            PUSH(r->insts, r->ninsts, s);
            if (r->o->trace) {
                if (!(s->track = calloc(1, sizeof *s->track))) return WEIR_ENOMEM;
                if (R > 1) snprintf(s->track->name, sizeof s->track->name, "%s #%d", x->label, q);
                else snprintf(s->track->name, sizeof s->track->name, "%s", x->label);
            }
            s->r = r;
            s->node = x;
            s->def = x->def;
            s->pool = r->pools[x->id];
            s->replica = q;
            s->nreplicas = R;
            s->chained_in = x->ninputs == 1 && weir__node_chained(x->inputs[0]);
            size_t nin = merge ? (x->ninputs ? 1 : 0) : x->ninputs;
            s->in = calloc(nin ? nin : 1, sizeof *s->in);
            if (!s->in) return WEIR_ENOMEM;
            for (size_t k = 0; k < nin; k++) {
                if (sd) WEIR__TRY(new_pchan(r, &s->in[k], 1, false, cap));
                else s->in[k] = p->port[k][q];
            }
            s->nin = nin;
        }
        if (sd) {
            /* The splitter: after the replicas in insts, reading the node's
             * port, emitting round-robin to the replicas' channels. */
            weir_stage *sp = calloc(1, sizeof *sp);
            if (!sp) return WEIR_ENOMEM;
            PUSH(r->insts, r->ninsts, sp);
            *sp = (weir_stage){.r = r, .node = x, .def = sd, .replica = 0, .nreplicas = 1,
                               .is_splitter = true};
            if (!(sp->in = calloc(1, sizeof *sp->in))) return WEIR_ENOMEM;
            sp->in[0] = p->port[0][0];
            sp->nin = 1;
            weir_pool *spool;
            size_t keep = cap * 2 * (size_t)R + 8;
            WEIR__TRY(weir_pool_create(&spool, WEIR_KIND_BYTES, keep, 0));
            PUSH(r->extra_pools, r->nextra_pools, spool);
            sp->pool = spool;
            if (r->o->trace) {
                if (!(sp->track = calloc(1, sizeof *sp->track))) return WEIR_ENOMEM;
                snprintf(sp->track->name, sizeof sp->track->name, "%s (split)", x->label);
            }
            pchan **rin = calloc((size_t)R, sizeof *rin);
            if (!rin) return WEIR_ENOMEM;
            for (int q = 0; q < R; q++) rin[q] = r->insts[r->ninsts - 1 - (size_t)R + (size_t)q]->in[0];
            emitter *se;
            int rc = new_emitter(r, &se, spool);
            if (rc == 0) rc = emitter_add(se, rin, R, false, x);
            free(rin);
            if (rc) return rc;
            sp->out = se;
        }
    }
    /* Emitters: what each node's output feeds. */
    size_t inst_at = 0;
    for (size_t i = 0; i < n; i++) {
        weir_node *x = order[i];
        int R = x->replicas;
        weir_stage **mine = &r->insts[inst_at];
        inst_at += (size_t)R + (x->def->splitter && x->ninputs == 1 ? 1 : 0);
        weir_pool *pool = r->pools[x->id];
        if (weir__node_chained(x)) { /* replica q → the consumer's replica q */
            pchan **yin = pt[x->outputs[0]->id].port[0];
            for (int q = 0; q < R; q++) {
                emitter *re;
                WEIR__TRY(new_emitter(r, &re, pool));
                WEIR__TRY(emitter_add(re, &yin[q], 1, false, x->outputs[0]));
                mine[q]->out = re;
                mine[q]->ordered_replica = true;
            }
            continue;
        }
        emitter *out;
        WEIR__TRY(new_emitter(r, &out, pool));
        /* Each outgoing edge → the consumer's port fed by this edge. Ports
         * are in connect order; the k-th edge from x to y is y's k-th port
         * whose upstream is x. */
        for (size_t e = 0; e < x->noutputs; e++) {
            weir_node *y = x->outputs[e];
            size_t seen = 0;
            for (size_t f = 0; f < e; f++) seen += x->outputs[f] == y;
            size_t port = 0;
            for (size_t k = 0, c = 0; k < y->ninputs; k++) {
                if (y->inputs[k] != x) continue;
                if (c++ == seen) {
                    port = k;
                    break;
                }
            }
            bool hash = y->replicas > 1 && y->npart > 0;
            WEIR__TRY(emitter_add(out, pt[y->id].port[port], pt[y->id].nch, hash, y));
        }
        if (R == 1) {
            mine[0]->out = out;
            continue;
        }
        if (x->out_kind == WEIR_KIND_NONE) { /* replicated sink */
            for (int q = 0; q < R; q++) mine[q]->out = out;
            continue;
        }
        /* Replicated: replicas → collector → out. */
        collector *c = calloc(1, sizeof *c);
        if (!c) return WEIR_ENOMEM;
        PUSH(r->cols, r->ncols, c);
        if (!(c->sh = calloc(1, sizeof *c->sh))) return WEIR_ENOMEM;
        *c->sh = (weir_stage){.r = r, .node = x, .def = x->def, .nreplicas = 1};
        if (r->o->trace) {
            if (!(c->sh->track = calloc(1, sizeof *c->sh->track))) return WEIR_ENOMEM;
            snprintf(c->sh->track->name, sizeof c->sh->track->name, "%s (collect)", x->label);
        }
        c->r = r;
        c->node = x;
        c->out = out;
        c->sorted = x->def->flags & WEIR_STAGE_SORTED_OUT;
        c->ordered = ordered_collector(x);
        bool per_replica = c->ordered || c->sorted;
        c->nin = per_replica ? R : 1;
        c->in = calloc((size_t)c->nin, sizeof *c->in);
        if (!c->in) return WEIR_ENOMEM;
        if (per_replica) {
            for (int q = 0; q < R; q++)
                WEIR__TRY(new_pchan(r, &c->in[q], 1, false, cap));
        } else {
            WEIR__TRY(new_pchan(r, &c->in[0], R, true, cap * (size_t)R));
        }
        bool pre = presplit_for(x);
        for (int q = 0; q < R; q++) {
            emitter *re;
            WEIR__TRY(new_emitter(r, &re, pool));
            pchan *to = c->in[per_replica ? q : 0];
            if (pre) WEIR__TRY(emitter_add_presplit(re, to, x->outputs[0]->replicas, x->outputs[0]));
            else WEIR__TRY(emitter_add(re, &to, 1, false, x));
            mine[q]->out = re;
            mine[q]->ordered_replica = c->ordered;
        }
    }
    /* Workers: every instance, then every collector. */
    r->nworkers = r->ninsts + r->ncols;
    r->workers = calloc(r->nworkers, sizeof *r->workers);
    if (!r->workers) return WEIR_ENOMEM;
    for (size_t i = 0; i < r->ninsts; i++) r->workers[i].inst = r->insts[i];
    for (size_t i = 0; i < r->ncols; i++) r->workers[r->ninsts + i].col = r->cols[i];
    return 0;
}

/* One replica's counters; live adds what waits in its input channels. */
static void stats_of(const weir_stage *s, weir_node_stats *o, bool live)
{
#define LD(f) atomic_load_explicit(&s->st.f, memory_order_relaxed)
    *o = (weir_node_stats){
        .batches_in = LD(batches_in), .batches_out = LD(batches_out),
        .rows_in = LD(rows_in), .rows_out = LD(rows_out),
        .bytes_in = LD(bytes_in), .bytes_out = LD(bytes_out),
        .busy_ns = LD(busy_ns), .wait_in_ns = LD(wait_in_ns), .wait_out_ns = LD(wait_out_ns),
        .progress_done = LD(progress_done), .progress_total = LD(progress_total),
        .replicas = 1, .finished = LD(finished),
    };
#undef LD
    for (size_t k = 0; live && k < s->nin; k++) {
        o->queued += weir_chan_len(s->in[k]->ch);
        o->capacity += weir_chan_cap(s->in[k]->ch);
    }
}

static void stats_add(weir_node_stats *t, const weir_node_stats *o)
{
    t->batches_in += o->batches_in;
    t->batches_out += o->batches_out;
    t->rows_in += o->rows_in;
    t->rows_out += o->rows_out;
    t->bytes_in += o->bytes_in;
    t->bytes_out += o->bytes_out;
    t->busy_ns += o->busy_ns;
    t->wait_in_ns += o->wait_in_ns;
    t->wait_out_ns += o->wait_out_ns;
    t->progress_done += o->progress_done;
    t->progress_total += o->progress_total;
    t->queued += o->queued;
    t->capacity += o->capacity;
    t->finished += o->finished;
}

static void teardown(run *r, weir_node **order, size_t n, ports *pt)
{
    /* First: no live reader may reach the channels or instances freed below. */
    pthread_mutex_lock(&r->g->live_mu);
    r->g->live = NULL;
    pthread_mutex_unlock(&r->g->live_mu);
    for (size_t i = 0; i < r->nchans; i++) {
        void *item;
        while (weir_chan_try_recv(r->chans[i]->ch, &item) == 0)
            weir_batch_release(item);
        weir_chan_destroy(r->chans[i]->ch);
        free(r->chans[i]);
    }
    free(r->chans);
    for (size_t i = 0; i < r->nemitters; i++) {
        for (size_t k = 0; k < r->emitters[i]->nt; k++) {
            free(r->emitters[i]->t[k].ch);
            free(r->emitters[i]->t[k].key_idx);
            free(r->emitters[i]->t[k].parts);
            free(r->emitters[i]->t[k].proj_idx);
            weir_schema_release(r->emitters[i]->t[k].proj);
        }
        free(r->emitters[i]->t);
        free(r->emitters[i]);
    }
    free(r->emitters);
    /* Final counters and the trace move to the graph. */
    for (size_t i = 0; i < r->ninsts; i++) {
        weir_stage *s = r->insts[i];
        weir_node *x = s->node;
        if (s->is_splitter) { /* its own: it would count the input twice */
            stats_of(s, &x->split_stats, false);
            x->has_split = true;
            continue;
        }
        if (!x->rstats || x->nrstats != s->nreplicas) {
            free(x->rstats);
            x->rstats = calloc((size_t)s->nreplicas, sizeof *x->rstats);
            x->nrstats = x->rstats ? s->nreplicas : 0;
        }
        weir_node_stats one;
        stats_of(s, &one, false);
        if (s->replica < x->nrstats) x->rstats[s->replica] = one;
        stats_add(&x->stats, &one);
    }
    for (size_t i = 0; i < r->ncols; i++) {
        if (!r->cols[i]->sh) continue; /* the build failed before it */
        stats_of(r->cols[i]->sh, &r->cols[i]->node->col_stats, false);
        r->cols[i]->node->has_col = true;
    }
    if (r->o->trace) {
        weir_graph *g = r->g;
        size_t nt = r->ninsts + r->ncols;
        g->tracks = calloc(nt ? nt : 1, sizeof *g->tracks);
        for (size_t i = 0; i < nt; i++) {
            weir_stage *s = i < r->ninsts ? r->insts[i] : r->cols[i - r->ninsts]->sh;
            if (!s || !s->track) continue;
            if (g->tracks) g->tracks[g->ntracks++] = *s->track;
            else free(s->track->spans);
        }
    }
    for (size_t i = 0; i < r->ninsts; i++) {
        weir_stage *s = r->insts[i];
        free(s->track);
        free(s->in);
        free(s);
    }
    free(r->insts);
    for (size_t i = 0; i < r->ncols; i++) {
        if (r->cols[i]->sh) free(r->cols[i]->sh->track);
        free(r->cols[i]->sh);
        free(r->cols[i]->in);
        free(r->cols[i]);
    }
    free(r->cols);
    free(r->workers);
    for (size_t i = 0; i < n; i++) {
        weir_node *x = order[i];
        if (pt[x->id].port) {
            for (size_t k = 0; k < x->ninputs; k++) free(pt[x->id].port[k]);
            free(pt[x->id].port);
        }
        weir_pool_destroy(r->pools[x->id]);
    }
    free(r->pools);
    for (size_t i = 0; i < r->nextra_pools; i++) weir_pool_destroy(r->extra_pools[i]);
    free(r->extra_pools);
}

/* ---- launching -------------------------------------------------------------------------- */

static void *pthread_worker(void *p)
{
    worker_main(p);
    return NULL;
}

/* Start workers[from..to) on pthreads; on failure, fail the run (the
 * others are woken by the cancel) and leave the rest unstarted. */
static size_t start_pthreads(run *r, size_t from, size_t to, pthread_t *th)
{
    size_t i;
    for (i = from; i < to; i++) {
        int rc = pthread_create(&th[i - from], NULL, pthread_worker, &r->workers[i]);
        if (rc) {
            run_fail(r, WEIR_ETHREAD, "cannot start worker thread %zu of %zu: %s",
                     i + 1, r->nworkers, strerror(rc));
            break;
        }
    }
    return i - from;
}

static void join_pthreads(pthread_t *th, size_t n)
{
    for (size_t i = 0; i < n; i++) pthread_join(th[i], NULL);
}

/* Workers [from, to) could not start. They still owe their channel
 * releases, so that nobody waits for them forever (the run is failing). */
static void abandon_unstarted(run *r, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        worker *w = &r->workers[i];
        if (w->inst) {
            for (size_t k = 0; k < w->inst->nin; k++) pchan_abandon(w->inst->in[k]);
            emitter_close(w->inst->out);
        } else {
            for (int k = 0; k < w->col->nin; k++) pchan_abandon(w->col->in[k]);
            emitter_close(w->col->out);
        }
    }
}

static int launcher_choice(const weir_run_opts *o)
{
    if (o->launcher) return o->launcher;
    const char *env = getenv("WEIR_LAUNCH");
    if (env && strcmp(env, "pthread") == 0) return WEIR_LAUNCH_PTHREAD;
    return WEIR_LAUNCH_OPENMP;
}

static void launch(run *r)
{
    size_t n = r->nworkers;
    if (launcher_choice(r->o) == WEIR_LAUNCH_PTHREAD || n > WEIR__OMP_MAX_TEAM) {
        pthread_t *th = malloc(n * sizeof *th);
        if (!th) {
            run_fail(r, WEIR_ENOMEM, "out of memory starting workers");
            abandon_unstarted(r, 0, n);
            return;
        }
        size_t started = n > 1 ? start_pthreads(r, 1, n, th) : 0;
        abandon_unstarted(r, 1 + started, n);
        worker_main(&r->workers[0]);
        join_pthreads(th, started);
        free(th);
        return;
    }
    /* OpenMP: one team thread per worker. The team is reused from one run
     * to the next, and OMP_PROC_BIND / OMP_PLACES place it. If the runtime
     * grants a smaller team (OMP_THREAD_LIMIT, nesting), thread 0 starts
     * the remaining workers on pthreads: every worker must run at once,
     * since they block on one another. */
#pragma omp parallel num_threads((int)n)
    {
        size_t t = (size_t)omp_get_thread_num();
        size_t team = (size_t)omp_get_num_threads();
        pthread_t *extra = NULL;
        size_t nextra = 0;
        if (t == 0) atomic_store(&r->team_running, team);
        if (t == 0 && team < n) {
            extra = malloc((n - team) * sizeof *extra);
            if (extra) nextra = start_pthreads(r, team, n, extra);
            else run_fail(r, WEIR_ENOMEM, "out of memory starting workers");
            abandon_unstarted(r, team + nextra, n);
        }
        /* The barrier orders abandon_unstarted() before any team worker
         * runs, so no worker sees a channel both live and abandoned. */
#pragma omp barrier
        worker_main(&r->workers[t]);
        /* Wait for the rest of the team here, parked, rather than at the
         * region's closing barrier, where libgomp's default policy spins
         * and would take CPU from the workers still running. */
        if (atomic_fetch_sub(&r->team_running, 1) == 1) {
            weir__ec_notify_all(&r->team_done);
        } else {
            for (;;) {
                uint32_t key = weir__ec_prepare(&r->team_done);
                if (atomic_load(&r->team_running) == 0) break;
                weir__ec_wait(&r->team_done, key, UINT64_MAX);
            }
        }
        if (t == 0) {
            join_pthreads(extra, nextra);
            free(extra);
        }
    }
}

/* ---- the run ----------------------------------------------------------------------------- */

int weir_graph_run(weir_graph *g, weir_ctx *ctx, const weir_run_opts *opts)
{
    weir_run_opts defaults = {0};
    const weir_run_opts *o = opts ? opts : &defaults;
    g->errmsg[0] = '\0';
    weir_node **order;
    int rc = weir__graph_validate(g, o, &order);
    if (rc) return rc;
    size_t n = g->nnodes;
    for (size_t i = 0; i < n; i++) {
        g->nodes[i]->stats = (weir_node_stats){.replicas = g->nodes[i]->replicas};
        g->nodes[i]->has_split = false;
        g->nodes[i]->has_col = false;
    }
    weir__graph_free_trace(g);
    g->trace_t0 = weir_now_ns();
    run r = {.g = g, .o = o};
    pthread_mutex_init(&r.mu, NULL);
    ports *pt = calloc(n, sizeof *pt);
    r.pools = calloc(n, sizeof *r.pools);
    rc = pt && r.pools ? weir_ctx_create(&r.ctx, ctx) : WEIR_ENOMEM;
    if (rc == 0) rc = build(&r, order, n, pt);
    if (rc == 0) {
        pthread_mutex_lock(&g->live_mu);
        g->live = &r;
        pthread_mutex_unlock(&g->live_mu);
        launch(&r);
        rc = r.err;
        if (rc == 0 && ctx && weir_ctx_done(ctx)) rc = weir_ctx_err(ctx);
        /* Outputs become visible only when everything succeeded. */
        for (size_t i = 0; rc == 0 && i < r.ninsts; i++) {
            weir_stage *s = r.insts[i];
            if (s->def->commit) {
                int crc = s->def->commit(s);
                if (crc < 0) {
                    note_result(s, crc, "commit");
                    rc = r.err ? r.err : crc;
                }
            }
        }
        for (size_t i = 0; i < r.ninsts; i++) {
            weir_stage *s = r.insts[i];
            if (s->opened && s->def->close) s->def->close(s);
        }
        if (rc == 0) rc = r.err;
        if (is_ctx_err(rc) && !r.errmsg[0]) {
            /* Cancelled from outside: the workers stopped without a stage
             * error of their own. */
            snprintf(r.errmsg, sizeof r.errmsg, "%s",
                     rc == WEIR_EDEADLINE ? "deadline exceeded" : "canceled");
        }
        if (rc) snprintf(g->errmsg, sizeof g->errmsg, "%s", r.errmsg);
    } else if (rc == WEIR_ENOMEM) {
        weir__graph_errorf(g, "out of memory building the run");
    }
    if (r.pools) teardown(&r, order, n, pt);
    free(pt);
    free(order);
    weir_ctx_destroy(r.ctx);
    pthread_mutex_destroy(&r.mu);
    return rc;
}

int weir_node_get_stats(const weir_node *n, weir_node_stats *st)
{
    pthread_mutex_lock(&n->g->live_mu);
    run *r = n->g->live;
    if (r) {
        *st = (weir_node_stats){.replicas = n->replicas};
        for (size_t i = 0; i < r->ninsts; i++) {
            if (r->insts[i]->node != n || r->insts[i]->is_splitter) continue;
            weir_node_stats one;
            stats_of(r->insts[i], &one, true);
            stats_add(st, &one);
        }
    } else {
        *st = n->stats;
    }
    pthread_mutex_unlock(&n->g->live_mu);
    return 0;
}

int weir_node_replica_stats(const weir_node *n, int rep, weir_node_stats *st)
{
    int rc = WEIR_EINVAL;
    pthread_mutex_lock(&n->g->live_mu);
    run *r = n->g->live;
    if (rep == WEIR_STATS_COLLECTOR) {
        for (size_t i = 0; r && i < r->ncols; i++) {
            if (r->cols[i]->node != n) continue;
            stats_of(r->cols[i]->sh, st, false);
            rc = 0;
        }
        if (!r && n->has_col) {
            *st = n->col_stats;
            rc = 0;
        }
        pthread_mutex_unlock(&n->g->live_mu);
        return rc;
    }
    for (size_t i = 0; r && i < r->ninsts; i++) {
        if (r->insts[i]->node == n && r->insts[i]->is_splitter == (rep == -1) &&
            r->insts[i]->replica == (rep == -1 ? 0 : rep)) {
            stats_of(r->insts[i], st, true);
            rc = 0;
        }
    }
    if (!r && rep >= 0 && rep < n->nrstats) {
        *st = n->rstats[rep];
        rc = 0;
    } else if (!r && rep == -1 && n->has_split) {
        *st = n->split_stats;
        rc = 0;
    }
    pthread_mutex_unlock(&n->g->live_mu);
    return rc;
}

/* ---- trace ------------------------------------------------------------------------------------- */

/* Write all of buf to fd. @return 0 or WEIR_EIO. */
static int write_all(int fd, const char *buf, size_t n)
{
    while (n) {
        ssize_t k = write(fd, buf, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return WEIR_EIO;
        buf += k;
        n -= (size_t)k;
    }
    return 0;
}

int weir_graph_trace_write(const weir_graph *g, int fd)
{
    if (!g->tracks) return WEIR_EINVAL;
    static const char *const kinds[] = {"process", "wait input", "wait output"};
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (!buf) return WEIR_ENOMEM;
    int rc = 0;
    uint64_t dropped = 0;
#define EMIT(...)                                                                    \
    do {                                                                             \
        int k_ = snprintf(buf + len, cap - len, __VA_ARGS__);                        \
        if (k_ > 0) len += (size_t)k_;                                               \
        if (cap - len < 512) {                                                       \
            if ((rc = write_all(fd, buf, len))) goto out;                            \
            len = 0;                                                                 \
        }                                                                            \
    } while (0)
    EMIT("{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n");
    EMIT("{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0,"
         "\"args\":{\"name\":\"weir %s\"}}", WEIR_VERSION_STRING);
    for (size_t t = 0; t < g->ntracks; t++) {
        const weir__track *tr = &g->tracks[t];
        dropped += tr->dropped;
        /* Names come from spec labels: keep them JSON-safe. */
        char name[sizeof tr->name];
        size_t k = 0;
        for (const char *p = tr->name; *p && k + 1 < sizeof name; p++)
            name[k++] = (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) ? '_' : *p;
        name[k] = '\0';
        EMIT(",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":%zu,"
             "\"args\":{\"name\":\"%s\"}}", t + 1, name);
        for (size_t i = 0; i < tr->n; i++) {
            const weir__span *sp = &tr->spans[i];
            EMIT(",\n{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"B\",\"pid\":1,\"tid\":%zu,"
                 "\"ts\":%.3f}", kinds[sp->kind], kinds[sp->kind], t + 1,
                 (double)(sp->start - g->trace_t0) / 1e3);
            EMIT(",\n{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"E\",\"pid\":1,\"tid\":%zu,"
                 "\"ts\":%.3f}", kinds[sp->kind], kinds[sp->kind], t + 1,
                 (double)(sp->end - g->trace_t0) / 1e3);
        }
    }
    EMIT("\n],\"otherData\":{\"weir_version\":\"%s\",\"dropped_spans\":%llu}}\n",
         WEIR_VERSION_STRING, (unsigned long long)dropped);
    rc = write_all(fd, buf, len);
out:
#undef EMIT
    free(buf);
    return rc;
}

/* ---- describe ------------------------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t size, len;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->len < b->size ? b->p + b->len : NULL,
                      b->len < b->size ? b->size - b->len : 0, fmt, ap);
    va_end(ap);
    if (k > 0) b->len += (size_t)k;
}

static void sb_schema(sbuf *b, const weir_schema *s)
{
    size_t n = weir_schema_ncols(s);
    for (size_t c = 0; c < n; c++) sb_printf(b, "%s%s", c ? ", " : "", weir_schema_name(s, c));
}

/* How a replicated node's output is collected (matches build()). */
static const char *collector_kind(const weir_node *x)
{
    if (x->def->flags & WEIR_STAGE_SORTED_OUT) return "sorted-merge";
    if (ordered_collector(x)) return "ordered";
    return "unordered";
}

static const char *dist_name(const weir_node *y)
{
    return y->replicas > 1 ? (y->npart ? "hash split" : "round-robin") : "direct";
}

/* What one batch of x's output may hold, for the channel memory estimate:
 * bytes batches are cut at 1 MiB by the stages that make them (read,
 * to_csv, unzstd); rows batches hold up to 4096 rows (gen, csv), each
 * field an 8-byte slice plus its text, ~24 bytes in all. */
#define EST_BYTES_BATCH ((double)(1 << 20))
#define EST_ROWS 4096
#define EST_FIELD 24.0
#define EST_COLS_UNKNOWN 16

static void sb_size(sbuf *b, double n)
{
    if (n < 1024) sb_printf(b, "%.0f B", n);
    else if (n < 1024 * 1024) sb_printf(b, "%.0f KiB", n / 1024);
    else if (n < 1024.0 * 1024 * 1024) sb_printf(b, "%.1f MiB", n / 1024 / 1024);
    else sb_printf(b, "%.2f GiB", n / 1024 / 1024 / 1024);
}

static double est_batch(const weir_node *x, sbuf *what)
{
    if (x->out_kind != WEIR_KIND_ROWS) {
        sb_printf(what, "%s, up to 1 MiB each", weir_kind_name(x->out_kind));
        return EST_BYTES_BATCH;
    }
    size_t c = x->schema ? weir_schema_ncols(x->schema) : EST_COLS_UNKNOWN;
    double n = EST_ROWS * (double)c * EST_FIELD;
    sb_printf(what, "rows, ~%d x %zu columns%s, ~", EST_ROWS, c,
              x->schema ? "" : " (unknown: guessed)");
    sb_size(what, n);
    sb_printf(what, " each");
    return n;
}

/* One line of the estimate: n channels of cap batches of x's output. */
static double est_line(sbuf *m, const weir_node *x, const char *where, size_t n, size_t cap)
{
    char wbuf[160];
    sbuf what = {wbuf, sizeof wbuf, 0};
    double per = est_batch(x, &what);
    /* A channel fills to its capacity, or (emit_into) to WEIR__CHAN_BYTES
     * and one batch more, but always takes two. */
    double one = per * (double)cap, bound = (double)WEIR__CHAN_BYTES + per;
    if (bound < 2 * per) bound = 2 * per;
    if (one > bound) one = bound;
    double total = one * (double)n;
    sb_printf(m, "    %s", x->label);
    if (x->pos.file) sb_printf(m, " (%s:%u:%u)", x->pos.file, x->pos.line, x->pos.col);
    sb_printf(m, "%s: %zu x ", where, n);
    sb_size(m, one);
    sb_printf(m, " (%s): ", wbuf);
    sb_size(m, total);
    sb_printf(m, "\n");
    return total;
}

size_t weir_graph_describe(weir_graph *g, const weir_run_opts *opts, char *buf,
                           size_t size)
{
    weir_run_opts defaults = {0};
    const weir_run_opts *o = opts ? opts : &defaults;
    sbuf b = {buf, size, 0};
    if (size) buf[0] = '\0';
    weir_node **order;
    if (weir__graph_validate(g, o, &order)) {
        sb_printf(&b, "invalid graph: %s\n", g->errmsg);
        return b.len;
    }
    size_t cap = o->chan_capacity ? o->chan_capacity : WEIR__CHAN_CAPACITY;
    size_t threads = 0, chans = 0;
    double mem = 0;
    /* The estimate's lines, printed after the graph (sized first). */
    sbuf m = {NULL, 0, 0};
    char *mbuf = NULL;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1 && !(mbuf = malloc(m.len + 1))) break;
        m = (sbuf){mbuf, pass ? m.len + 1 : 0, 0};
        mem = 0;
        for (size_t i = 0; i < g->nnodes; i++) {
            weir_node *x = order[i];
            bool chained = weir__node_chained(x);
            /* R channels of cap, or (unordered) one shared of R x cap. */
            if (x->replicas > 1 && x->out_kind != WEIR_KIND_NONE && !chained)
                mem += est_line(&m, x, " collector", (size_t)x->replicas, cap);
            for (size_t k = 0; k < x->noutputs; k++) {
                weir_node *y = x->outputs[k];
                char where[300];
                bool split = y->def->splitter && y->ninputs == 1 && !chained;
                snprintf(where, sizeof where, " -> %s%s", y->label, split ? "'s splitter" : "");
                mem += est_line(&m, x, where, split || y->replicas == 1 ? 1 : (size_t)y->replicas,
                                cap);
                if (split && y->replicas > 1) {
                    snprintf(where, sizeof where, " -> %s's replicas", y->label);
                    mem += est_line(&m, x, where, (size_t)y->replicas, cap);
                }
            }
        }
    }
    for (size_t i = 0; i < g->nnodes; i++) {
        weir_node *x = order[i];
        bool split = x->def->splitter && x->ninputs == 1;
        bool chained = weir__node_chained(x);
        threads += (size_t)x->replicas +
                   (x->replicas > 1 && x->out_kind != WEIR_KIND_NONE && !chained) + split;
        sb_printf(&b, "%s", x->label);
        if (x->pos.file) sb_printf(&b, " (%s:%u:%u)", x->pos.file, x->pos.line, x->pos.col);
        sb_printf(&b, ": %s -> %s", weir_kind_name(x->in_kind), weir_kind_name(x->out_kind));
        if (x->replicas > 1 && chained)
            sb_printf(&b, ", %d replicas, each feeding the same replica of %s", x->replicas,
                      x->outputs[0]->label);
        else if (x->replicas > 1)
            sb_printf(&b, ", %d replicas, %s collector%s%s", x->replicas, collector_kind(x),
                      presplit_for(x) ? " (the replicas split rows by key for " : "",
                      presplit_for(x) ? x->outputs[0]->label : "");
        if (x->replicas > 1 && !chained && presplit_for(x)) sb_printf(&b, ")");
        if (split) sb_printf(&b, ", input cut by %s", x->def->splitter->name);
        sb_printf(&b, "\n");
        if (x->schema) {
            sb_printf(&b, "    columns: ");
            sb_schema(&b, x->schema);
            sb_printf(&b, "\n");
        }
        for (size_t k = 0; k < x->noutputs; k++) {
            weir_node *y = x->outputs[k];
            const char *bc = x->noutputs > 1 ? " (broadcast)" : "";
            int yr = y->replicas;
            if (chained) {
                chans += (size_t)yr;
                sb_printf(&b, "    -> %s: chained (replica k to replica k), %d channels of %zu batches\n",
                          y->label, yr, cap);
            } else if (y->def->splitter && y->ninputs == 1) {
                chans += 1 + (yr > 1 ? (size_t)yr : 0);
                sb_printf(&b, "    -> %s: its splitter %s, 1 channel of %zu batches%s", y->label,
                          y->def->splitter->name, cap, bc);
                if (yr > 1)
                    sb_printf(&b, "; then round-robin to the replicas, %d channels of %zu batches",
                              yr, cap);
                sb_printf(&b, "\n");
            } else {
                chans += (size_t)yr;
                sb_printf(&b, "    -> %s: %s, %d channel%s of %zu batches%s\n", y->label,
                          dist_name(y), yr, yr > 1 ? "s" : "", cap, bc);
            }
        }
        if (x->replicas > 1 && x->out_kind != WEIR_KIND_NONE && !chained)
            chans += (size_t)x->replicas;
    }
    sb_printf(&b, "%zu worker threads, %zu channels of %zu batches\n", threads, chans, cap);
    if (mbuf && m.len) {
        sb_printf(&b, "channel memory, estimated with every channel full: ~");
        sb_size(&b, mem);
        sb_printf(&b, "\n%s", mbuf);
        sb_printf(&b, "    (an estimate: a bytes batch holds up to 1 MiB, a rows batch up to %d\n"
                      "    rows at ~24 B a field; a channel holds its capacity in batches, or\n"
                      "    %zu MiB and one batch more, at least two; batches inside stages and\n"
                      "    in pools come on top)\n",
                  EST_ROWS, WEIR__CHAN_BYTES >> 20);
    }
    free(mbuf);
    free(order);
    return b.len;
}

/* A dot identifier-safe label: quotes and backslashes escaped. */
static void sb_dot_str(sbuf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') sb_printf(b, "\\");
        if (*s == '\n') sb_printf(b, "\\n");
        else sb_printf(b, "%c", *s);
    }
}

size_t weir_graph_dot(weir_graph *g, const weir_run_opts *opts, char *buf, size_t size)
{
    weir_run_opts defaults = {0};
    const weir_run_opts *o = opts ? opts : &defaults;
    sbuf b = {buf, size, 0};
    if (size) buf[0] = '\0';
    sb_printf(&b, "digraph weir {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n");
    weir_node **order;
    if (weir__graph_validate(g, o, &order)) {
        sb_printf(&b, "  error [label=\"");
        sb_dot_str(&b, g->errmsg);
        sb_printf(&b, "\", color=red];\n}\n");
        return b.len;
    }
    for (size_t i = 0; i < g->nnodes; i++) {
        weir_node *x = order[i];
        if (x->replicas == 1) {
            sb_printf(&b, "  n%d [label=\"", x->id);
            sb_dot_str(&b, x->label);
            sb_printf(&b, "\\n%s -> %s\"];\n", weir_kind_name(x->in_kind),
                      weir_kind_name(x->out_kind));
            continue;
        }
        /* A replicated node: its replicas in a cluster; in/out are the
         * distributor and collector points edges attach to. */
        sb_printf(&b, "  subgraph cluster_%d {\n    label=\"", x->id);
        sb_dot_str(&b, x->label);
        sb_printf(&b, " x%d\";\n    style=rounded;\n", x->replicas);
        bool chained_in = x->ninputs == 1 && weir__node_chained(x->inputs[0]);
        if (!chained_in)
            sb_printf(&b, "    n%d_in [label=\"%s\", shape=invtriangle];\n", x->id,
                      x->def->splitter && x->ninputs == 1 ? x->def->splitter->name
                      : x->npart                            ? "hash"
                                                            : "round-robin");
        for (int r = 0; r < x->replicas; r++) {
            sb_printf(&b, "    n%d_r%d [label=\"", x->id, r);
            sb_dot_str(&b, x->label);
            sb_printf(&b, " #%d\"];\n", r);
            if (!chained_in) sb_printf(&b, "    n%d_in -> n%d_r%d;\n", x->id, x->id, r);
        }
        if (x->out_kind != WEIR_KIND_NONE && !weir__node_chained(x)) {
            sb_printf(&b, "    n%d [label=\"%s collector\", shape=triangle];\n", x->id,
                      collector_kind(x));
            for (int r = 0; r < x->replicas; r++)
                sb_printf(&b, "    n%d_r%d -> n%d;\n", x->id, r, x->id);
        }
        sb_printf(&b, "  }\n");
    }
    for (size_t i = 0; i < g->nnodes; i++) {
        weir_node *x = order[i];
        if (weir__node_chained(x)) { /* replica to replica, across the clusters */
            for (int r = 0; r < x->replicas; r++)
                sb_printf(&b, "  n%d_r%d -> n%d_r%d [label=\"%s\"];\n", x->id, r,
                          x->outputs[0]->id, r, weir_kind_name(x->out_kind));
            continue;
        }
        for (size_t k = 0; k < x->noutputs; k++) {
            weir_node *y = x->outputs[k];
            sb_printf(&b, "  n%d -> n%d%s [label=\"%s\"];\n", x->id, y->id,
                      y->replicas > 1 ? "_in" : "", weir_kind_name(x->out_kind));
        }
    }
    sb_printf(&b, "}\n");
    free(order);
    return b.len;
}
