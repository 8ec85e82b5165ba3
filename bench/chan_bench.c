/*
 * chan_bench.c — weir_chan throughput against a mutex+condvar bounded queue,
 * both measured in this process, plus the CPU a blocked pipeline burns.
 *
 *   build/bench/chan_bench [--items N] [--reps N] [--json]
 *                          [--case LIST] [--impl weir|mutex|all]
 *                          [--blocked-ms MS] [--blocked-reps N]
 *                          [--go-spsc ITEMS_PER_S] [--go-mpmc ITEMS_PER_S]
 *
 * Cases (LIST is a comma-separated subset; default all):
 *   spsc     1 producer -> 1 consumer, one item per call, capacity 1024
 *   batch    the same with send_many/recv_many of 64 (mutex: push_n/pop_n)
 *   mpmc     2 producers -> 2 consumers on one channel, one item per call
 *   chain    a source, forwarding stages and a sink joined by 1:1 channels,
 *            batches of 64: 2 channels (3 threads) and 8 (9 threads)
 *   blocked  a 3-stage pipeline blocked for 1 s: process CPU time spent
 *
 * Each throughput figure is the median of --reps runs of --items items
 * (4x as many for the batched cases), each run timed from the workers'
 * first start to their last end; weir and mutex runs alternate. Every run
 * checks that the sinks received each item exactly once (count and sum), so
 * a fast wrong channel cannot report a number. weir calls get a live
 * context, as a pipeline stage would pass. --go-spsc/--go-mpmc take Go's
 * figures for the same cases (bench/run.sh measures them) and add weir/Go
 * ratios. The last line says how much CPU other processes took meanwhile.
 *
 * The targets printed at the end are informational: the exit status is 0
 * whenever every run completed and checked out, whatever the speed.
 */
#include "weir.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CAPACITY 1024
#define BATCH 64
#define DEFAULT_ITEMS 2000000u
#define DEFAULT_REPS 5
#define MAX_REPS 101
#define MAX_THREADS 16

/* ------------------------------------------------------------------------ */
/* Baseline: a bounded queue under one mutex and two condition variables.   */
/* ------------------------------------------------------------------------ */

/*
 * The textbook design, written carefully: a power-of-two ring, a waiter
 * count per side so that a push or pop signals only when somebody sleeps,
 * and the signal sent after the unlock so the woken thread does not run
 * into a held mutex. push_n/pop_n move as many items as fit per lock
 * acquisition, the equivalent of weir's send_many/recv_many.
 */
typedef struct mq {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    void **buf;
    size_t mask;
    size_t head, tail; /* free-running; tail - head items are buffered */
    int pop_waiters, push_waiters;
    bool closed;
} mq;

#define MQ_CLOSED (-1L)

static int mq_init(mq *q, size_t cap)
{
    size_t c = 1;
    while (c < cap) c <<= 1;
    memset(q, 0, sizeof *q);
    q->buf = calloc(c, sizeof *q->buf);
    if (!q->buf) return -1;
    q->mask = c - 1;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
    return 0;
}

static void mq_fini(mq *q)
{
    pthread_cond_destroy(&q->not_full);
    pthread_cond_destroy(&q->not_empty);
    pthread_mutex_destroy(&q->mu);
    free(q->buf);
}

static void mq_close(mq *q)
{
    pthread_mutex_lock(&q->mu);
    q->closed = true;
    pthread_mutex_unlock(&q->mu);
    pthread_cond_broadcast(&q->not_empty);
    pthread_cond_broadcast(&q->not_full);
}

/* Wake after the unlock: the waiter counts were read under the lock, and a
 * waiter counted there is inside pthread_cond_wait, so it cannot miss it. */
static void mq_wake(pthread_cond_t *cv, int waiters, size_t moved)
{
    if (waiters == 0) return;
    if (waiters > 1 && moved > 1)
        pthread_cond_broadcast(cv);
    else
        pthread_cond_signal(cv);
}

/* Push up to n items, blocking while full. @return the number pushed
 * (1..n) or MQ_CLOSED. */
static long mq_push_n(mq *q, void *const *items, size_t n)
{
    size_t cap = q->mask + 1;
    pthread_mutex_lock(&q->mu);
    while (q->tail - q->head == cap && !q->closed) {
        q->push_waiters++;
        pthread_cond_wait(&q->not_full, &q->mu);
        q->push_waiters--;
    }
    if (q->closed) {
        pthread_mutex_unlock(&q->mu);
        return MQ_CLOSED;
    }
    size_t room = cap - (q->tail - q->head);
    if (n > room) n = room;
    for (size_t i = 0; i < n; i++) q->buf[(q->tail + i) & q->mask] = items[i];
    q->tail += n;
    int waiters = q->pop_waiters;
    pthread_mutex_unlock(&q->mu);
    mq_wake(&q->not_empty, waiters, n);
    return (long)n;
}

/* Pop up to max items, blocking while empty and open. @return the number
 * popped (1..max) or MQ_CLOSED once closed and drained. */
static long mq_pop_n(mq *q, void **items, size_t max)
{
    pthread_mutex_lock(&q->mu);
    while (q->tail == q->head && !q->closed) {
        q->pop_waiters++;
        pthread_cond_wait(&q->not_empty, &q->mu);
        q->pop_waiters--;
    }
    size_t avail = q->tail - q->head;
    if (avail == 0) { /* closed and drained */
        pthread_mutex_unlock(&q->mu);
        return MQ_CLOSED;
    }
    if (max > avail) max = avail;
    for (size_t i = 0; i < max; i++) items[i] = q->buf[(q->head + i) & q->mask];
    q->head += max;
    int waiters = q->push_waiters;
    pthread_mutex_unlock(&q->mu);
    mq_wake(&q->not_full, waiters, max);
    return (long)max;
}

static long mq_push(mq *q, void *item) { return mq_push_n(q, &item, 1); }
static long mq_pop(mq *q, void **item) { return mq_pop_n(q, item, 1); }

/* ------------------------------------------------------------------------ */
/* Clocks and statistics                                                    */
/* ------------------------------------------------------------------------ */

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double wall_now(void) { return clock_s(CLOCK_MONOTONIC); }
static double cpu_now(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

/* System-wide CPU time from /proc/stat, to tell how much of the machine
 * other processes took during the run (the figures are only as good as
 * the machine was quiet). busy excludes idle and iowait; steal is time the
 * hypervisor gave to someone else. false if /proc/stat is unreadable. */
typedef struct sysload {
    double busy, steal; /* seconds, summed over CPUs */
} sysload;

static bool sysload_read(sysload *l)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return false;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
                   &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 8) return false;
    double hz = (double)sysconf(_SC_CLK_TCK);
    /* user nice system idle iowait irq softirq steal */
    l->busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6]) / hz;
    l->steal = (double)v[7] / hz;
    return true;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct stat3 {
    double median, min, max;
} stat3;

static stat3 stats_of(const double *v, int n)
{
    double s[MAX_REPS];
    memcpy(s, v, (size_t)n * sizeof *v);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    stat3 r = {.min = s[0], .max = s[n - 1]};
    r.median = (n % 2) ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    return r;
}

/* ------------------------------------------------------------------------ */
/* Queues behind one interface, and the thread roles                        */
/* ------------------------------------------------------------------------ */

enum impl { IMPL_WEIR, IMPL_MUTEX, IMPL_COUNT };
static const char *const impl_name[IMPL_COUNT] = {"weir", "mutex"};

/* One edge: a weir channel or a mutex queue. */
typedef struct queue {
    enum impl impl;
    weir_chan *ch;
    mq q;
} queue;

/* Results of a queue call other than a count. */
#define Q_CLOSED (-1L) /* closed (and drained, for receive) */
#define Q_STOP (-2L)   /* the context was cancelled: the blocked case's end */
#define Q_ERROR (-3L)  /* anything else: a bug, reported */

static int queue_init(queue *e, enum impl impl, unsigned flags)
{
    e->impl = impl;
    e->ch = NULL;
    if (impl == IMPL_WEIR) return weir_chan_create(&e->ch, CAPACITY, flags);
    return mq_init(&e->q, CAPACITY);
}

static void queue_fini(queue *e)
{
    if (e->impl == IMPL_WEIR)
        weir_chan_destroy(e->ch);
    else
        mq_fini(&e->q);
}

static void queue_close(queue *e)
{
    if (e->impl == IMPL_WEIR)
        weir_chan_close(e->ch);
    else
        mq_close(&e->q);
}

/* Stop signal for stalled roles: the context for weir, a flag for mutex. */
typedef struct stopper {
    weir_ctx *ctx;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
} stopper;

static void stopper_wait(stopper *s, enum impl impl)
{
    if (impl == IMPL_WEIR) {
        weir_ctx_wait(s->ctx, UINT64_MAX);
        return;
    }
    pthread_mutex_lock(&s->mu);
    while (!s->stop) pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

enum role { ROLE_SOURCE, ROLE_FORWARD, ROLE_SINK, ROLE_STALL };

typedef struct worker {
    enum role role;
    queue *in, *out;
    bool batched;              /* send_many/recv_many of BATCH */
    uint64_t first, count;     /* source: values first .. first+count-1 */
    atomic_int *producers;     /* shared by sources: the last one closes */
    stopper *stop;
    pthread_barrier_t *start;
    uint64_t sum, got;         /* sink: what arrived */
    int err;                   /* first unexpected weir code */
    double t0, t1;             /* wall clock when it started and ended */
    pthread_t tid;
} worker;

static long map_weir(worker *w, long r)
{
    if (r >= 0) return r;
    if (r == WEIR_ECLOSED) return Q_CLOSED;
    if (r == WEIR_ECANCELED) return Q_STOP;
    if (!w->err) w->err = (int)r;
    return Q_ERROR;
}

/* Receive one item (unbatched) or up to BATCH. @return count or Q_*. */
static long w_recv(worker *w, void **items)
{
    queue *e = w->in;
    weir_ctx *ctx = w->stop->ctx;
    if (e->impl == IMPL_WEIR) {
        if (!w->batched) {
            int r = weir_chan_recv(e->ch, items, ctx);
            return map_weir(w, r == 0 ? 1 : r);
        }
        return map_weir(w, weir_chan_recv_many(e->ch, items, BATCH, ctx));
    }
    return w->batched ? mq_pop_n(&e->q, items, BATCH) : mq_pop(&e->q, items);
}

/* Send all n items, as many calls as it takes. @return 0 or Q_*. */
static long w_send_all(worker *w, void *const *items, size_t n)
{
    queue *e = w->out;
    weir_ctx *ctx = w->stop->ctx;
    size_t off = 0;
    while (off < n) {
        long r;
        if (e->impl == IMPL_WEIR) {
            if (!w->batched) {
                int rc = weir_chan_send(e->ch, items[off], ctx);
                r = map_weir(w, rc == 0 ? 1 : rc);
            } else {
                r = map_weir(w, weir_chan_send_many(e->ch, items + off,
                                                    n - off, ctx));
            }
        } else {
            r = w->batched ? mq_push_n(&e->q, items + off, n - off)
                           : mq_push(&e->q, items[off]);
        }
        if (r < 0) return r;
        off += (size_t)r;
    }
    return 0;
}

static void role_source(worker *w)
{
    void *buf[BATCH];
    size_t per = w->batched ? BATCH : 1;
    uint64_t v = w->first, end = w->first + w->count; /* count may be "endless" */
    while (v != end) {
        size_t n = 0;
        while (n < per && v != end) buf[n++] = (void *)(uintptr_t)v++;
        if (w_send_all(w, buf, n) < 0) break;
    }
    if (!w->producers || atomic_fetch_sub(w->producers, 1) == 1)
        queue_close(w->out);
}

static void role_forward(worker *w)
{
    void *buf[BATCH];
    for (;;) {
        long n = w_recv(w, buf);
        if (n < 0) break;
        if (w_send_all(w, buf, (size_t)n) < 0) break;
    }
    queue_close(w->out);
}

static void role_sink(worker *w)
{
    void *buf[BATCH];
    uint64_t sum = 0, got = 0;
    for (;;) {
        long n = w_recv(w, buf);
        if (n < 0) break;
        for (long i = 0; i < n; i++) sum += (uintptr_t)buf[i];
        got += (uint64_t)n;
    }
    w->sum = sum;
    w->got = got;
}

static void role_stall(worker *w)
{
    stopper_wait(w->stop, (w->in ? w->in : w->out)->impl);
    if (w->out) queue_close(w->out);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    pthread_barrier_wait(w->start);
    w->t0 = wall_now();
    switch (w->role) {
    case ROLE_SOURCE: role_source(w); break;
    case ROLE_FORWARD: role_forward(w); break;
    case ROLE_SINK: role_sink(w); break;
    case ROLE_STALL: role_stall(w); break;
    }
    w->t1 = wall_now();
    return NULL;
}

static void die(const char *what, int code)
{
    fprintf(stderr, "chan_bench: %s: %s\n", what,
            code < 0 ? weir_strerror(code) : strerror(code));
    exit(1);
}

static void start_workers(worker *ws, int n, pthread_barrier_t *start)
{
    for (int i = 0; i < n; i++) {
        ws[i].start = start;
        int rc = pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]);
        if (rc) die("pthread_create", rc);
    }
}

static void join_workers(worker *ws, int n)
{
    for (int i = 0; i < n; i++) pthread_join(ws[i].tid, NULL);
}

/* ------------------------------------------------------------------------ */
/* The cases                                                                */
/* ------------------------------------------------------------------------ */

typedef struct run {
    double wall, cpu; /* seconds */
} run;

/*
 * Time a run: the workers wait at the start barrier (with the main thread,
 * which takes the CPU clock just before it), each records its own start and
 * end, and the run lasts from the first start to the last end. The workers
 * time themselves because the main thread may not get a CPU again until
 * they finish (two spinning workers on two CPUs), so its clock would start
 * late.
 */
static run timed_run(worker *ws, int n)
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)n + 1);
    start_workers(ws, n, &start);
    double c0 = cpu_now();
    pthread_barrier_wait(&start);
    join_workers(ws, n);
    double c1 = cpu_now();
    pthread_barrier_destroy(&start);
    double t0 = ws[0].t0, t1 = ws[0].t1;
    for (int i = 1; i < n; i++) {
        if (ws[i].t0 < t0) t0 = ws[i].t0;
        if (ws[i].t1 > t1) t1 = ws[i].t1;
    }
    return (run){.wall = t1 - t0, .cpu = c1 - c0};
}

/* Check what the sinks received: every value 1..items exactly once is
 * implied by count == items and sum == items(items+1)/2, given that the
 * sources sent exactly that set. */
static void check(const char *name, enum impl impl, worker *ws, int n,
                  uint64_t items)
{
    uint64_t got = 0, sum = 0;
    for (int i = 0; i < n; i++) {
        if (ws[i].err) die(name, ws[i].err);
        if (ws[i].role == ROLE_SINK) {
            got += ws[i].got;
            sum += ws[i].sum;
        }
    }
    uint64_t want = items * (items + 1) / 2;
    if (got != items || sum != want) {
        fprintf(stderr,
                "chan_bench: %s/%s: received %" PRIu64 " items (want %" PRIu64
                "), sum %" PRIu64 " (want %" PRIu64 ")\n",
                name, impl_name[impl], got, items, sum, want);
        exit(1);
    }
}

/* A chain: source -> (stages-1 forwarders) -> sink over `stages` 1:1 edges.
 * stages == 1 is the plain SPSC case. */
static run run_chain(const char *name, enum impl impl, int stages,
                     bool batched, uint64_t items, stopper *stop)
{
    queue qs[MAX_THREADS];
    worker ws[MAX_THREADS];
    int nthreads = stages + 1;
    memset(ws, 0, sizeof ws);
    for (int i = 0; i < stages; i++) {
        int rc = queue_init(&qs[i], impl, WEIR_CHAN_SPSC);
        if (rc) die("queue_init", rc < 0 ? rc : ENOMEM);
    }
    for (int i = 0; i < nthreads; i++) {
        worker *w = &ws[i];
        w->role = i == 0 ? ROLE_SOURCE
                  : i == stages ? ROLE_SINK
                                : ROLE_FORWARD;
        w->in = i > 0 ? &qs[i - 1] : NULL;
        w->out = i < stages ? &qs[i] : NULL;
        w->batched = batched;
        w->first = 1;
        w->count = items;
        w->stop = stop;
    }
    run r = timed_run(ws, nthreads);
    check(name, impl, ws, nthreads, items);
    for (int i = 0; i < stages; i++) queue_fini(&qs[i]);
    return r;
}

/* P producers and C consumers sharing one channel. */
static run run_mpmc(const char *name, enum impl impl, int producers,
                    int consumers, bool batched, uint64_t items,
                    stopper *stop)
{
    queue q;
    worker ws[MAX_THREADS];
    int nthreads = producers + consumers;
    atomic_int left;
    atomic_init(&left, producers);
    memset(ws, 0, sizeof ws);
    int rc = queue_init(&q, impl, WEIR_CHAN_MPMC);
    if (rc) die("queue_init", rc < 0 ? rc : ENOMEM);
    uint64_t next = 1;
    for (int i = 0; i < nthreads; i++) {
        worker *w = &ws[i];
        w->batched = batched;
        w->stop = stop;
        if (i < producers) {
            /* Split 1..items into contiguous ranges, one per producer. */
            uint64_t share = items / (uint64_t)producers +
                             ((uint64_t)i < items % (uint64_t)producers);
            w->role = ROLE_SOURCE;
            w->out = &q;
            w->first = next;
            w->count = share;
            w->producers = &left;
            next += share;
        } else {
            w->role = ROLE_SINK;
            w->in = &q;
        }
    }
    run r = timed_run(ws, nthreads);
    check(name, impl, ws, nthreads, items);
    queue_fini(&q);
    return r;
}

enum blocked_mode { BLOCKED_IDLE, BLOCKED_FULL, BLOCKED_COUNT };
static const char *const blocked_name[BLOCKED_COUNT] = {"idle", "full"};

typedef struct blocked_run {
    double cpu_ms;    /* process CPU ms per wall second while blocked */
    double cancel_ms; /* from cancel/close to the last thread joined */
} blocked_run;

/*
 * A 3-stage pipeline (source -> ch0 -> mid -> ch1 -> sink) left blocked:
 *   idle: the source waits for input that never comes, so mid and sink
 *         wait on empty channels;
 *   full: the sink stalls, so ch1 then ch0 fill and the source and mid wait
 *         on full channels.
 * The process CPU time is measured over a sleep of `ms` that starts as the
 * threads leave the start barrier (so it includes any spinning before they
 * park), and reported per second of that window. Then the run is cancelled
 * (weir: the context; mutex: the stop flag and closing the queues) and
 * joined.
 */
static blocked_run run_blocked(enum impl impl, enum blocked_mode mode,
                               unsigned ms)
{
    queue qs[2];
    worker ws[3];
    stopper stop = {.stop = false};
    pthread_mutex_init(&stop.mu, NULL);
    pthread_cond_init(&stop.cv, NULL);
    int rc = 0;
    if (impl == IMPL_WEIR) { /* mutex roles never look at a context */
        rc = weir_ctx_create(&stop.ctx, NULL);
        if (rc) die("weir_ctx_create", rc);
    }
    for (int i = 0; i < 2; i++) {
        rc = queue_init(&qs[i], impl, WEIR_CHAN_SPSC);
        if (rc) die("queue_init", rc < 0 ? rc : ENOMEM);
    }
    memset(ws, 0, sizeof ws);
    for (int i = 0; i < 3; i++) {
        ws[i].in = i > 0 ? &qs[i - 1] : NULL;
        ws[i].out = i < 2 ? &qs[i] : NULL;
        ws[i].batched = true;
        ws[i].stop = &stop;
    }
    ws[0].role = mode == BLOCKED_IDLE ? ROLE_STALL : ROLE_SOURCE;
    ws[0].first = 1;
    ws[0].count = UINT64_MAX; /* first + count wraps to 0: endless */
    ws[1].role = ROLE_FORWARD;
    ws[2].role = mode == BLOCKED_FULL ? ROLE_STALL : ROLE_SINK;

    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 4);
    start_workers(ws, 3, &start);
    double c0 = cpu_now(), w0 = wall_now();
    pthread_barrier_wait(&start);
    struct timespec ts = {.tv_sec = ms / 1000,
                          .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
    double c1 = cpu_now(), w1 = wall_now();
    double t0 = wall_now();
    if (impl == IMPL_WEIR) {
        weir_ctx_cancel(stop.ctx, WEIR_ECANCELED);
    } else {
        pthread_mutex_lock(&stop.mu);
        stop.stop = true;
        pthread_mutex_unlock(&stop.mu);
        pthread_cond_broadcast(&stop.cv);
        queue_close(&qs[0]);
        queue_close(&qs[1]);
    }
    join_workers(ws, 3);
    /* Per second of the window actually measured: if the workers spin,
     * this thread's sleep can overrun. */
    blocked_run r = {.cpu_ms = (c1 - c0) / (w1 - w0) * 1e3,
                     .cancel_ms = (wall_now() - t0) * 1e3};
    pthread_barrier_destroy(&start);
    for (int i = 0; i < 3; i++)
        if (ws[i].err) die("blocked pipeline", ws[i].err);
    for (int i = 0; i < 2; i++) queue_fini(&qs[i]);
    weir_ctx_destroy(stop.ctx);
    pthread_cond_destroy(&stop.cv);
    pthread_mutex_destroy(&stop.mu);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Driver                                                                   */
/* ------------------------------------------------------------------------ */

enum tcase { C_SPSC, C_BATCH, C_MPMC, C_CHAIN2, C_CHAIN8, C_COUNT };
static const char *const tcase_key[C_COUNT] = {
    "spsc", "spsc_batch64", "mpmc_2x2", "chain2_batch64", "chain8_batch64"};
static const char *const tcase_label[C_COUNT] = {
    "spsc 1->1, 1 item/call", "spsc 1->1, batch 64", "mpmc 2->2, 1 item/call",
    "chain 2 edges, batch 64", "chain 8 edges, batch 64"};

typedef struct result {
    bool ran;
    stat3 rate;   /* items/s */
    stat3 cpu;    /* CPU seconds per wall second (1.0 = one core busy) */
} result;

typedef struct opts {
    uint64_t items;
    int reps;
    bool json;
    bool want_case[C_COUNT];
    bool want_blocked;
    bool want_impl[IMPL_COUNT];
    unsigned blocked_ms;
    int blocked_reps;
    double go_spsc, go_mpmc; /* items/s, 0 if not given */
} opts;

/* Batched cases move BATCHED_SCALE times more items per run: they are that
 * much faster, and a run of a few milliseconds would mostly time the
 * thread wake-ups around the start barrier. */
#define BATCHED_SCALE 4u

static uint64_t case_items(enum tcase c, const opts *o)
{
    return (c == C_SPSC || c == C_MPMC) ? o->items : o->items * BATCHED_SCALE;
}

static run run_case(enum tcase c, enum impl impl, uint64_t n, stopper *stop)
{
    switch (c) {
    case C_SPSC: return run_chain(tcase_key[c], impl, 1, false, n, stop);
    case C_BATCH: return run_chain(tcase_key[c], impl, 1, true, n, stop);
    case C_MPMC: return run_mpmc(tcase_key[c], impl, 2, 2, false, n, stop);
    case C_CHAIN2: return run_chain(tcase_key[c], impl, 2, true, n, stop);
    case C_CHAIN8: return run_chain(tcase_key[c], impl, 8, true, n, stop);
    default: abort();
    }
}

/* Run case c for every wanted implementation, interleaved (weir, mutex,
 * weir, mutex, ...) so that a burst of noise on the machine lands on both
 * sides of a ratio rather than on one implementation's whole series. */
static void measure(enum tcase c, const opts *o, stopper *stop,
                    result out[IMPL_COUNT], bool progress)
{
    double rate[IMPL_COUNT][MAX_REPS], cpu[IMPL_COUNT][MAX_REPS];
    uint64_t n = case_items(c, o);
    for (int i = 0; i < o->reps; i++) {
        for (int m = 0; m < IMPL_COUNT; m++) {
            if (!o->want_impl[m]) continue;
            if (progress) {
                fprintf(stderr, "  running %-24s %-5s %2d/%d\r", tcase_label[c],
                        impl_name[m], i + 1, o->reps);
                fflush(stderr);
            }
            run r = run_case(c, (enum impl)m, n, stop);
            rate[m][i] = (double)n / r.wall;
            cpu[m][i] = r.cpu / r.wall;
        }
    }
    for (int m = 0; m < IMPL_COUNT; m++) {
        if (!o->want_impl[m]) continue;
        out[m] = (result){.ran = true, .rate = stats_of(rate[m], o->reps),
                          .cpu = stats_of(cpu[m], o->reps)};
    }
}

/* "123.4M" style, in a static ring so several fit in one printf. */
static const char *human(double v)
{
    static char ring[8][32];
    static int k;
    char *s = ring[k++ & 7];
    if (v >= 1e9)
        snprintf(s, 32, "%.2fG", v / 1e9);
    else if (v >= 1e6)
        snprintf(s, 32, "%.1fM", v / 1e6);
    else if (v >= 1e3)
        snprintf(s, 32, "%.1fk", v / 1e3);
    else
        snprintf(s, 32, "%.0f", v);
    return s;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: chan_bench [--items N] [--reps N] [--json] [--case LIST]\n"
            "                  [--impl weir|mutex|all] [--blocked-ms MS]\n"
            "                  [--blocked-reps N] [--go-spsc ITEMS_PER_S]\n"
            "                  [--go-mpmc ITEMS_PER_S]\n"
            "  LIST: comma-separated of spsc,batch,mpmc,chain,blocked (default: all)\n");
}

static uint64_t parse_u64(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v == 0) {
        fprintf(stderr, "chan_bench: %s wants a positive integer, got '%s'\n",
                opt, s);
        exit(2);
    }
    return (uint64_t)v;
}

static double parse_rate(const char *opt, const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= 0)) {
        fprintf(stderr, "chan_bench: %s wants a number, got '%s'\n", opt, s);
        exit(2);
    }
    return v;
}

static void parse_cases(opts *o, const char *list)
{
    memset(o->want_case, 0, sizeof o->want_case);
    o->want_blocked = false;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "spsc"))
            o->want_case[C_SPSC] = true;
        else if (!strcmp(t, "batch"))
            o->want_case[C_BATCH] = true;
        else if (!strcmp(t, "mpmc"))
            o->want_case[C_MPMC] = true;
        else if (!strcmp(t, "chain"))
            o->want_case[C_CHAIN2] = o->want_case[C_CHAIN8] = true;
        else if (!strcmp(t, "blocked"))
            o->want_blocked = true;
        else {
            fprintf(stderr, "chan_bench: unknown case '%s'\n", t);
            usage(stderr);
            exit(2);
        }
    }
}

static void parse_args(opts *o, int argc, char **argv)
{
    *o = (opts){.items = DEFAULT_ITEMS, .reps = DEFAULT_REPS,
                .blocked_ms = 1000, .blocked_reps = 3};
    for (int c = 0; c < C_COUNT; c++) o->want_case[c] = true;
    o->want_blocked = true;
    o->want_impl[IMPL_WEIR] = o->want_impl[IMPL_MUTEX] = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = true;
        if (!strcmp(a, "--json")) {
            o->json = true;
            takes = false;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (!v) {
            fprintf(stderr, "chan_bench: unknown option or missing value: %s\n", a);
            usage(stderr);
            exit(2);
        } else if (!strcmp(a, "--items")) {
            o->items = parse_u64(a, v);
        } else if (!strcmp(a, "--reps")) {
            uint64_t r = parse_u64(a, v);
            o->reps = r > MAX_REPS ? MAX_REPS : (int)r;
        } else if (!strcmp(a, "--case")) {
            parse_cases(o, v);
        } else if (!strcmp(a, "--impl")) {
            bool all = !strcmp(v, "all");
            o->want_impl[IMPL_WEIR] = all || !strcmp(v, "weir");
            o->want_impl[IMPL_MUTEX] = all || !strcmp(v, "mutex");
            if (!o->want_impl[IMPL_WEIR] && !o->want_impl[IMPL_MUTEX]) {
                fprintf(stderr, "chan_bench: --impl wants weir, mutex or all\n");
                exit(2);
            }
        } else if (!strcmp(a, "--blocked-ms")) {
            uint64_t m = parse_u64(a, v);
            o->blocked_ms = m > 60000 ? 60000 : (unsigned)m;
        } else if (!strcmp(a, "--blocked-reps")) {
            uint64_t r = parse_u64(a, v);
            o->blocked_reps = r > MAX_REPS ? MAX_REPS : (int)r;
        } else if (!strcmp(a, "--go-spsc")) {
            o->go_spsc = parse_rate(a, v);
        } else if (!strcmp(a, "--go-mpmc")) {
            o->go_mpmc = parse_rate(a, v);
        } else {
            fprintf(stderr, "chan_bench: unknown option: %s\n", a);
            usage(stderr);
            exit(2);
        }
        if (takes) i++;
    }
}

/* A target: value compared with goal; lower_is_better for CPU time. */
typedef struct target {
    const char *name;
    double value, goal;
    bool lower_is_better, known;
    const char *unit;
} target;

static bool target_met(const target *t)
{
    return t->lower_is_better ? t->value < t->goal : t->value >= t->goal;
}

static double ratio(const result *a, const result *b)
{
    return (a->ran && b->ran && b->rate.median > 0)
               ? a->rate.median / b->rate.median
               : 0.0;
}

int main(int argc, char **argv)
{
    opts o;
    parse_args(&o, argc, argv);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

    stopper stop = {.stop = false}; /* throughput runs: a live, unused ctx */
    int rc = weir_ctx_create(&stop.ctx, NULL);
    if (rc) die("weir_ctx_create", rc);
    pthread_mutex_init(&stop.mu, NULL);
    pthread_cond_init(&stop.cv, NULL);

    result res[C_COUNT][IMPL_COUNT];
    memset(res, 0, sizeof res);
    bool progress = !o.json && isatty(STDERR_FILENO);
    sysload l0, l1;
    bool have_load = sysload_read(&l0);
    double own0 = cpu_now();
    double t_start = wall_now();
    for (int c = 0; c < C_COUNT; c++)
        if (o.want_case[c]) measure((enum tcase)c, &o, &stop, res[c], progress);

    /* Blocked pipeline: weir gets blocked_reps runs per mode; the mutex
     * baseline (condvars: surely ~0) one run per mode, to show the floor. */
    stat3 bcpu[BLOCKED_COUNT][IMPL_COUNT], bcancel[BLOCKED_COUNT][IMPL_COUNT];
    bool bran[BLOCKED_COUNT][IMPL_COUNT];
    memset(bran, 0, sizeof bran);
    if (o.want_blocked) {
        for (int b = 0; b < BLOCKED_COUNT; b++) {
            for (int m = 0; m < IMPL_COUNT; m++) {
                if (!o.want_impl[m]) continue;
                int reps = m == IMPL_WEIR ? o.blocked_reps : 1;
                double cpu[MAX_REPS], lat[MAX_REPS];
                if (progress) {
                    fprintf(stderr, "  running blocked %-16s %-5s ...\r",
                            blocked_name[b], impl_name[m]);
                    fflush(stderr);
                }
                for (int i = 0; i < reps; i++) {
                    blocked_run r = run_blocked((enum impl)m,
                                                (enum blocked_mode)b,
                                                o.blocked_ms);
                    cpu[i] = r.cpu_ms;
                    lat[i] = r.cancel_ms;
                }
                bcpu[b][m] = stats_of(cpu, reps);
                bcancel[b][m] = stats_of(lat, reps);
                bran[b][m] = true;
            }
        }
    }
    double elapsed = wall_now() - t_start;
    double own = cpu_now() - own0;
    have_load = have_load && sysload_read(&l1);
    /* Share of the machine's CPU time that went to other processes (and to
     * the hypervisor's other guests) while this ran. */
    double other = 0, steal = 0;
    if (have_load && elapsed > 0 && ncpu > 0) {
        other = (l1.busy - l0.busy - own) / (elapsed * (double)ncpu);
        steal = (l1.steal - l0.steal) / (elapsed * (double)ncpu);
        if (other < 0) other = 0; /* tick granularity */
    }
    if (progress) fprintf(stderr, "%60s\r", "");

#define RW(c) (&res[(c)][IMPL_WEIR])
#define RM(c) (&res[(c)][IMPL_MUTEX])

    /* Targets. */
    target tg[8];
    int nt = 0;
    double worst_blocked = 0;
    bool any_blocked = false;
    for (int b = 0; b < BLOCKED_COUNT; b++)
        if (bran[b][IMPL_WEIR]) {
            any_blocked = true;
            if (bcpu[b][IMPL_WEIR].median > worst_blocked)
                worst_blocked = bcpu[b][IMPL_WEIR].median;
        }
    tg[nt++] = (target){"spsc unbatched: weir >= 5x mutex",
                        ratio(RW(C_SPSC), RM(C_SPSC)), 5, false,
                        RW(C_SPSC)->ran && RM(C_SPSC)->ran, "x"};
    tg[nt++] = (target){"spsc unbatched: weir >= 2x Go",
                        (RW(C_SPSC)->ran && o.go_spsc > 0)
                            ? RW(C_SPSC)->rate.median / o.go_spsc
                            : 0,
                        2, false, RW(C_SPSC)->ran && o.go_spsc > 0, "x"};
    tg[nt++] = (target){"spsc batch 64: weir >= 3x mutex batched",
                        ratio(RW(C_BATCH), RM(C_BATCH)), 3, false,
                        RW(C_BATCH)->ran && RM(C_BATCH)->ran, "x"};
    tg[nt++] = (target){"chain8 >= 0.5x chain2 (weir)",
                        ratio(RW(C_CHAIN8), RW(C_CHAIN2)), 0.5, false,
                        RW(C_CHAIN8)->ran && RW(C_CHAIN2)->ran, "x"};
    tg[nt++] = (target){"blocked 1 s: weir CPU < 10 ms (worst of 2)",
                        worst_blocked, 10, true, any_blocked, " ms"};

    if (o.json) {
        printf("{\n  \"bench\": \"chan_bench\",\n  \"weir_version\": \"%s\",\n",
               weir_version_string());
        printf("  \"cpus\": %ld,\n  \"items\": %" PRIu64 ",\n  \"reps\": %d,\n"
               "  \"capacity\": %d,\n  \"batch\": %d,\n  \"elapsed_s\": %.3f,\n"
               "  \"other_load\": %.3f,\n  \"steal\": %.3f,\n",
               ncpu, o.items, o.reps, CAPACITY, BATCH, elapsed, other, steal);
        printf("  \"cases\": {");
        bool first = true;
        for (int c = 0; c < C_COUNT; c++) {
            if (!o.want_case[c]) continue;
            printf("%s\n    \"%s\": {", first ? "" : ",", tcase_key[c]);
            first = false;
            bool f2 = true;
            for (int m = 0; m < IMPL_COUNT; m++) {
                const result *r = &res[c][m];
                if (!r->ran) continue;
                printf("%s\"%s\": {\"items\": %" PRIu64 ", "
                       "\"items_per_s\": %.0f, \"min\": %.0f, "
                       "\"max\": %.0f, \"cpu_per_wall\": %.3f}",
                       f2 ? "" : ", ", impl_name[m],
                       case_items((enum tcase)c, &o), r->rate.median,
                       r->rate.min, r->rate.max, r->cpu.median);
                f2 = false;
            }
            printf("}");
        }
        printf("\n  },\n  \"blocked\": {");
        first = true;
        for (int b = 0; b < BLOCKED_COUNT; b++) {
            bool f2 = true;
            for (int m = 0; m < IMPL_COUNT; m++) {
                if (!bran[b][m]) continue;
                if (f2) {
                    printf("%s\n    \"%s\": {", first ? "" : ",",
                           blocked_name[b]);
                    first = false;
                }
                printf("%s\"%s\": {\"cpu_ms\": %.3f, \"cancel_ms\": %.3f}",
                       f2 ? "" : ", ", impl_name[m], bcpu[b][m].median,
                       bcancel[b][m].median);
                f2 = false;
            }
            if (!f2) printf("}");
        }
        printf("\n  },\n  \"go\": {\"spsc_items_per_s\": %.0f, "
               "\"mpmc_items_per_s\": %.0f},\n",
               o.go_spsc, o.go_mpmc);
        printf("  \"targets\": [");
        for (int i = 0; i < nt; i++) {
            printf("%s\n    {\"name\": \"%s\", \"value\": %.3f, \"goal\": %g, "
                   "\"met\": %s}",
                   i ? "," : "", tg[i].name, tg[i].value, tg[i].goal,
                   !tg[i].known ? "null" : target_met(&tg[i]) ? "true" : "false");
        }
        printf("\n  ]\n}\n");
        return 0;
    }

    printf("weir chan_bench (libweir %s): %ld CPUs, median of %d runs, "
           "capacity %d\n",
           weir_version_string(), ncpu, o.reps, CAPACITY);
    printf("items per run: %" PRIu64 " (1 item/call), %" PRIu64
           " (batched); rates in items/s; cpu = CPU-s per wall-s\n\n",
           o.items, o.items * BATCHED_SCALE);
    printf("%-25s %-6s %9s %9s %9s %5s  %s\n", "case", "impl", "median", "min",
           "max", "cpu", "weir/mutex");
    for (int c = 0; c < C_COUNT; c++) {
        if (!o.want_case[c]) continue;
        bool first = true;
        for (int m = 0; m < IMPL_COUNT; m++) {
            const result *r = &res[c][m];
            if (!r->ran) continue;
            char rs[16] = "";
            if (m == IMPL_WEIR && RM(c)->ran)
                snprintf(rs, sizeof rs, "%.2fx", ratio(r, RM(c)));
            printf("%-25s %-6s %9s %9s %9s %5.2f  %s\n",
                   first ? tcase_label[c] : "", impl_name[m],
                   human(r->rate.median), human(r->rate.min),
                   human(r->rate.max), r->cpu.median, rs);
            first = false;
        }
    }
    if (o.want_case[C_CHAIN2] && o.want_case[C_CHAIN8]) {
        char a[16] = "-", b[16] = "-";
        if (RW(C_CHAIN8)->ran)
            snprintf(a, sizeof a, "%.2fx", ratio(RW(C_CHAIN8), RW(C_CHAIN2)));
        if (RM(C_CHAIN8)->ran)
            snprintf(b, sizeof b, "%.2fx", ratio(RM(C_CHAIN8), RM(C_CHAIN2)));
        printf("\n%-25s weir %s, mutex %s\n", "chain8 / chain2 rate", a, b);
    }

    if (o.go_spsc > 0 || o.go_mpmc > 0) {
        printf("\n%-25s %16s %16s %10s\n", "vs Go (GOMAXPROCS=ncpu)", "weir",
               "go chan", "weir/go");
        const double go[2] = {o.go_spsc, o.go_mpmc};
        const enum tcase gc[2] = {C_SPSC, C_MPMC};
        for (int i = 0; i < 2; i++) {
            const result *w = RW(gc[i]);
            if (go[i] <= 0 || !w->ran) continue;
            printf("%-25s %16s %16s %9.2fx\n", tcase_label[gc[i]],
                   human(w->rate.median), human(go[i]), w->rate.median / go[i]);
        }
    }

    if (o.want_blocked) {
        printf("\nblocked 3-stage pipeline for %u ms: process CPU ms per "
               "second blocked; cancel -> all joined\n",
               o.blocked_ms);
        printf("%-25s %16s %16s %16s\n", "mode", "weir CPU ms/s",
               "mutex CPU ms/s", "weir cancel ms");
        for (int b = 0; b < BLOCKED_COUNT; b++) {
            char w[24] = "-", m[24] = "-", l[24] = "-";
            if (bran[b][IMPL_WEIR]) {
                snprintf(w, sizeof w, "%.3f", bcpu[b][IMPL_WEIR].median);
                snprintf(l, sizeof l, "%.3f", bcancel[b][IMPL_WEIR].median);
            }
            if (bran[b][IMPL_MUTEX])
                snprintf(m, sizeof m, "%.3f", bcpu[b][IMPL_MUTEX].median);
            printf("%-25s %16s %16s %16s\n",
                   b == BLOCKED_IDLE ? "idle (recv on empty)"
                                     : "full (send on full)",
                   w, m, l);
        }
        printf("(weir: median of %d runs; mutex: 1 run, the floor)\n",
               o.blocked_reps);
    }

    printf("\ntargets (informational, not an exit status)\n");
    for (int i = 0; i < nt; i++) {
        const target *t = &tg[i];
        if (!t->known) {
            printf("  %-44s %10s  n/a\n", t->name, "-");
            continue;
        }
        char v[32];
        snprintf(v, sizeof v, "%.2f%s", t->value, t->unit);
        printf("  %-44s %10s  %s\n", t->name, v, target_met(t) ? "PASS" : "MISS");
    }
    printf("\ntotal %.1f s", elapsed);
    if (have_load)
        printf("; other processes used %.0f%% of the CPUs meanwhile, steal "
               "%.0f%%%s",
               other * 100, steal * 100,
               other > 0.05 || steal > 0.05 ? " (NOISY: rerun on a quiet machine)"
                                            : "");
    printf("\n");

    weir_ctx_destroy(stop.ctx);
    pthread_cond_destroy(&stop.cv);
    pthread_mutex_destroy(&stop.mu);
    return 0;
}
