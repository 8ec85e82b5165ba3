/*
 * inorder.h — input order for a splitter and its replicas (csv, unzstd):
 * internal to stages/, included by each stage file that needs it.
 *
 * A splitter numbers the chunks it sends (0, 1, 2, …) and the replicas
 * parse them side by side. Three things must still follow input order:
 *
 *   errors: a replica (or the splitter) that finds one at chunk k reports
 *     it only once every chunk before k is done without one — so the run
 *     names the same first error as a single-threaded parse, whatever the
 *     timing (inorder_fail);
 *   side output (csv's rejects file): what chunk k writes is written after
 *     what every earlier chunk wrote (inorder_done's data);
 *   memory: the splitter waits while too many chunks are in flight
 *     (inorder_throttle), so it cannot run far ahead of the replicas.
 *
 * The splitter creates it (one reference) and puts its address in every
 * chunk; each replica takes a reference on the first chunk it sees. One
 * mutex: it is taken once per chunk, and a chunk is 256 KiB or more.
 * Waits are condition waits in slices of INORDER_WAIT_NS, watching the
 * run's context.
 */
#ifndef WEIR_INORDER_H
#define WEIR_INORDER_H

#include "weir.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define INORDER_WAIT_NS 20000000ull

typedef struct inorder_done {
    uint64_t index;
    void *data; /* its side output, written when its turn comes */
    size_t len;
} inorder_done;

typedef struct inorder {
    atomic_int refs;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t done_below; /* every chunk below it is done */
    inorder_done *ahead; /* chunks done while an earlier one was not */
    size_t nahead, ahead_cap;
    uint64_t err_index;  /* the lowest chunk that failed; UINT64_MAX: none */
    bool stopped;        /* a replica stopped early: downstream has all it wants */
    int replicas;        /* as the replicas say; 0 until one has */
    /* Writes a done chunk's side output, in chunk order, under the lock.
     * @return 0 or a negative code (kept: later writes are skipped). */
    int (*write)(struct inorder *o, const void *p, size_t n);
    int write_rc;
} inorder;

static inline void inorder_init(inorder *o)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&o->refs, 1);
    o->err_index = UINT64_MAX;
}

static inline void inorder_retain(inorder *o) { atomic_fetch_add(&o->refs, 1); }

/* Drop a reference. @return true if it was the last: the caller frees o
 * (after inorder_fini) and whatever it embeds it in. */
static inline bool inorder_release(inorder *o)
{
    return o && atomic_fetch_sub(&o->refs, 1) == 1;
}

static inline void inorder_fini(inorder *o)
{
    for (size_t i = 0; i < o->nahead; i++) free(o->ahead[i].data);
    free(o->ahead);
    pthread_cond_destroy(&o->cv);
    pthread_mutex_destroy(&o->mu);
}

/* A replica says how many there are (sizes the throttle). */
static inline void inorder_replicas(inorder *o, int n)
{
    pthread_mutex_lock(&o->mu);
    o->replicas = n;
    pthread_mutex_unlock(&o->mu);
}

/* One wait slice (mu held). */
static inline void inorder_wait(inorder *o)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + INORDER_WAIT_NS;
    ts.tv_sec += (time_t)(ns / 1000000000ull);
    ts.tv_nsec = (long)(ns % 1000000000ull);
    pthread_cond_timedwait(&o->cv, &o->mu, &ts);
}

static inline void inorder_put(inorder *o, const void *p, size_t n)
{
    if (n && o->write && o->write_rc == 0) o->write_rc = o->write(o, p, n);
}

/* Chunk k is done; data[0..len) is its side output (may be NULL/0),
 * written now if every earlier chunk is done, else copied and written
 * when they are. @return 0, WEIR_ENOMEM, or the writer's first error. */
static inline int inorder_done_chunk(inorder *o, uint64_t k, const void *data, size_t len)
{
    int rc = 0;
    pthread_mutex_lock(&o->mu);
    if (k != o->done_below) {
        if (o->nahead == o->ahead_cap) {
            size_t cap = o->ahead_cap ? 2 * o->ahead_cap : 16;
            inorder_done *na = realloc(o->ahead, cap * sizeof *na);
            if (na) o->ahead = na, o->ahead_cap = cap;
            else rc = WEIR_ENOMEM;
        }
        void *copy = NULL;
        if (!rc && len && !(copy = malloc(len))) rc = WEIR_ENOMEM;
        if (!rc) {
            if (len) memcpy(copy, data, len);
            o->ahead[o->nahead++] = (inorder_done){k, copy, len};
        }
    } else {
        inorder_put(o, data, len);
        o->done_below++;
        /* Chunks that finished early follow, in order. */
        for (size_t i = 0; i < o->nahead;) {
            if (o->ahead[i].index != o->done_below) {
                i++;
                continue;
            }
            inorder_put(o, o->ahead[i].data, o->ahead[i].len);
            free(o->ahead[i].data);
            o->ahead[i] = o->ahead[--o->nahead];
            o->done_below++;
            i = 0;
        }
    }
    if (!rc) rc = o->write_rc;
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
    return rc;
}

/* Downstream wants no more: waiters end quietly. */
static inline void inorder_stop(inorder *o)
{
    pthread_mutex_lock(&o->mu);
    o->stopped = true;
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
}

/* How a failure at chunk k settles. */
enum inorder_turn {
    INORDER_REPORT,   /* every earlier chunk is done cleanly: report it */
    INORDER_EARLIER,  /* an earlier chunk failed: that one reports */
    INORDER_STOPPED,  /* downstream stopped first: end quietly */
    INORDER_CANCELED, /* the run ended otherwise */
};

/* A failure at chunk k: wait until it is known whether it is the first. */
static inline enum inorder_turn inorder_fail(inorder *o, uint64_t k, weir_ctx *ctx)
{
    enum inorder_turn t;
    pthread_mutex_lock(&o->mu);
    if (k < o->err_index) {
        o->err_index = k;
        pthread_cond_broadcast(&o->cv);
    }
    for (;;) {
        if (o->err_index < k) t = INORDER_EARLIER;
        else if (o->done_below >= k) t = INORDER_REPORT;
        else if (o->stopped) t = INORDER_STOPPED;
        else if (weir_ctx_done(ctx)) t = INORDER_CANCELED;
        else {
            inorder_wait(o);
            continue;
        }
        break;
    }
    pthread_mutex_unlock(&o->mu);
    return t;
}

/* An earlier chunk's failure is about to end the run: wait for that,
 * quietly. @return the code for the callback to return. */
static inline int inorder_wait_end(inorder *o, weir_ctx *ctx)
{
    for (;;) {
        if (weir_ctx_wait(ctx, INORDER_WAIT_NS) != WEIR_EAGAIN) return weir_ctx_err(ctx);
        pthread_mutex_lock(&o->mu);
        bool stopped = o->stopped;
        pthread_mutex_unlock(&o->mu);
        if (stopped) return WEIR_DONE;
    }
}

/* Before the splitter sends chunk k: wait while per_replica chunks per
 * replica (guess: `guess` replicas until they say) are in flight — sent
 * and not done. (Not done in order would stall every replica behind the
 * slowest chunk.)
 * @return 0; WEIR_DONE (downstream stopped); a context error. */
static inline int inorder_throttle(inorder *o, uint64_t k, int guess, int per_replica,
                                   weir_stage *s)
{
    weir_ctx *ctx = weir_stage_ctx(s);
    int rc = 0;
    bool failed = false;
    uint64_t t0 = 0; /* when it began to wait: that is waiting to send */
    pthread_mutex_lock(&o->mu);
    for (;;) {
        int n = o->replicas > 0 ? o->replicas : guess;
        uint64_t limit = (uint64_t)n * (uint64_t)per_replica + 1;
        if (o->stopped) rc = WEIR_DONE;
        else if (o->err_index != UINT64_MAX) failed = true;
        else if (weir_ctx_done(ctx)) rc = weir_ctx_err(ctx);
        else if (k - o->done_below - o->nahead >= limit) { /* not done, in any order */
            if (!t0) t0 = weir_now_ns();
            inorder_wait(o);
            continue;
        }
        break;
    }
    pthread_mutex_unlock(&o->mu);
    if (t0) weir_stage_waited_out(s, t0, weir_now_ns());
    return failed ? inorder_wait_end(o, ctx) : rc;
}

/* A failure at chunk k with a message (printf-style in msg): reported
 * only if it is the first in input order. rc: the callback's code (a
 * WEIR_DONE from downstream stops the others quietly; a code without a
 * message, msg NULL, is returned as it is). @return what the callback
 * returns. */
static inline int inorder_settle(weir_stage *s, inorder *o, uint64_t k, int rc, int code,
                                 const char *msg)
{
    weir_ctx *ctx = weir_stage_ctx(s);
    if (rc == WEIR_DONE) {
        inorder_stop(o);
        return rc;
    }
    if (!msg) return rc;
    switch (inorder_fail(o, k, ctx)) {
    case INORDER_REPORT: return weir_stage_errorf(s, code, "%s", msg);
    case INORDER_STOPPED: return WEIR_DONE;
    case INORDER_EARLIER: return inorder_wait_end(o, ctx);
    case INORDER_CANCELED: break;
    }
    return weir_ctx_err(ctx);
}

#endif
