/*
 * ctx.c — contexts: cancellation trees, deadlines, and waking the threads
 * parked under them.
 *
 * done/err/cause are one atomic load of `cause`. Everything else (children,
 * parked waiters) is under the context's mutex, taken only on the slow
 * paths: create, destroy, cancel, and parking.
 *
 * Lock order: timer lock → parent's mutex → child's mutex.
 */
#include "internal.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct weir_ctx {
    _Atomic int cause;       /* 0 while live; the (negative) cause after */
    pthread_mutex_t mu;
    weir_ctx *parent;
    weir_ctx *children;      /* first child; siblings linked below */
    weir_ctx *prev_sib, *next_sib;
    weir__waiter *waiters;   /* threads parked under this context */
    weir__ec done_ec;        /* for weir_ctx_wait */
    uint64_t deadline;       /* own or inherited, whichever is earlier */
    /* Timer list membership (own deadline earlier than the parent's). */
    bool timed;
    weir_ctx *timer_next;
};

/* ---- the timer thread ----------------------------------------------------------- */

/* One thread for the whole process serves every deadline: a list sorted by
 * deadline and a condition variable on the monotonic clock. Started on first
 * use, it sleeps (no CPU) until the next deadline or a new earlier one. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    weir_ctx *head;
    bool started;
} timer = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void *timer_main(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&timer.mu);
    for (;;) {
        uint64_t now = weir_now_ns();
        while (timer.head && timer.head->deadline <= now) {
            weir_ctx *c = timer.head;
            timer.head = c->timer_next;
            c->timed = false;
            /* Still under timer.mu: destroy() takes it before freeing, so c
             * stays valid while we cancel it. */
            weir_ctx_cancel(c, WEIR_EDEADLINE);
        }
        if (!timer.head) {
            pthread_cond_wait(&timer.cv, &timer.mu);
        } else {
            uint64_t d = timer.head->deadline;
            struct timespec ts = {.tv_sec = (time_t)(d / 1000000000u),
                                  .tv_nsec = (long)(d % 1000000000u)};
            pthread_cond_timedwait(&timer.cv, &timer.mu, &ts);
        }
    }
    return NULL;
}

static int timer_add(weir_ctx *c)
{
    pthread_mutex_lock(&timer.mu);
    if (!timer.started) {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&timer.cv, &ca);
        pthread_condattr_destroy(&ca);
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&th, &at, timer_main, NULL);
        pthread_attr_destroy(&at);
        if (rc != 0) {
            pthread_mutex_unlock(&timer.mu);
            return WEIR_ETHREAD;
        }
        timer.started = true;
    }
    weir_ctx **pp = &timer.head;
    while (*pp && (*pp)->deadline <= c->deadline) pp = &(*pp)->timer_next;
    c->timer_next = *pp;
    *pp = c;
    c->timed = true;
    if (timer.head == c) pthread_cond_signal(&timer.cv);
    pthread_mutex_unlock(&timer.mu);
    return 0;
}

static void timer_remove(weir_ctx *c)
{
    pthread_mutex_lock(&timer.mu);
    if (c->timed) {
        weir_ctx **pp = &timer.head;
        while (*pp != c) pp = &(*pp)->timer_next;
        *pp = c->timer_next;
        c->timed = false;
    }
    pthread_mutex_unlock(&timer.mu);
}

/* ---- create / destroy ----------------------------------------------------------- */

static int ctx_new(weir_ctx **out, weir_ctx *parent, uint64_t deadline)
{
    *out = NULL;
    weir_ctx *c = calloc(1, sizeof *c);
    if (!c) return WEIR_ENOMEM;
    pthread_mutex_init(&c->mu, NULL);
    c->parent = parent;
    c->deadline = deadline;
    bool need_timer = deadline != UINT64_MAX;
    if (parent) {
        pthread_mutex_lock(&parent->mu);
        if (parent->deadline <= c->deadline) {
            c->deadline = parent->deadline; /* the parent's timer covers us */
            need_timer = false;
        }
        int pc = atomic_load_explicit(&parent->cause, memory_order_acquire);
        if (pc) atomic_store_explicit(&c->cause, pc, memory_order_release);
        c->next_sib = parent->children;
        if (parent->children) parent->children->prev_sib = c;
        parent->children = c;
        pthread_mutex_unlock(&parent->mu);
    }
    if (need_timer && !atomic_load_explicit(&c->cause, memory_order_acquire)) {
        if (c->deadline <= weir_now_ns()) {
            weir_ctx_cancel(c, WEIR_EDEADLINE);
        } else if (timer_add(c) != 0) {
            weir_ctx_destroy(c);
            return WEIR_ETHREAD;
        }
    }
    *out = c;
    return 0;
}

int weir_ctx_create(weir_ctx **out, weir_ctx *parent)
{
    return ctx_new(out, parent, UINT64_MAX);
}

int weir_ctx_create_deadline(weir_ctx **out, weir_ctx *parent,
                             uint64_t deadline_ns)
{
    return ctx_new(out, parent, deadline_ns);
}

int weir_ctx_create_timeout(weir_ctx **out, weir_ctx *parent,
                            uint64_t timeout_ns)
{
    uint64_t now = weir_now_ns();
    uint64_t d = timeout_ns > UINT64_MAX - now ? UINT64_MAX : now + timeout_ns;
    return ctx_new(out, parent, d);
}

void weir_ctx_destroy(weir_ctx *c)
{
    if (!c) return;
    weir_ctx_cancel(c, WEIR_ECANCELED);
    timer_remove(c);
    if (c->parent) {
        weir_ctx *p = c->parent;
        pthread_mutex_lock(&p->mu);
        if (c->prev_sib) c->prev_sib->next_sib = c->next_sib;
        else p->children = c->next_sib;
        if (c->next_sib) c->next_sib->prev_sib = c->prev_sib;
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_lock(&c->mu);
    assert(c->children == NULL && "weir_ctx_destroy: destroy children first");
    assert(c->waiters == NULL && "weir_ctx_destroy: threads still wait on it");
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* ---- cancel and queries --------------------------------------------------------- */

void weir_ctx_cancel(weir_ctx *c, int cause)
{
    if (cause >= 0) cause = WEIR_ECANCELED;
    pthread_mutex_lock(&c->mu);
    if (atomic_load_explicit(&c->cause, memory_order_relaxed)) {
        pthread_mutex_unlock(&c->mu);
        return; /* the first cancel wins */
    }
    /* seq_cst: a parking thread registers under mu and then reads cause;
     * either it sees this store or we see its registration below. */
    atomic_store_explicit(&c->cause, cause, memory_order_seq_cst);
    for (weir__waiter *w = c->waiters; w; w = w->next)
        weir__ec_notify_all(w->ec);
    weir__ec_notify_all(&c->done_ec);
    for (weir_ctx *ch = c->children; ch; ch = ch->next_sib)
        weir_ctx_cancel(ch, cause);
    pthread_mutex_unlock(&c->mu);
}

bool weir_ctx_done(const weir_ctx *c)
{
    return atomic_load_explicit(&c->cause, memory_order_acquire) != 0;
}

int weir_ctx_cause(const weir_ctx *c)
{
    return atomic_load_explicit(&c->cause, memory_order_acquire);
}

int weir_ctx_err(const weir_ctx *c)
{
    int cause = atomic_load_explicit(&c->cause, memory_order_acquire);
    if (!cause) return 0;
    return cause == WEIR_EDEADLINE ? WEIR_EDEADLINE : WEIR_ECANCELED;
}

uint64_t weir_ctx_deadline(const weir_ctx *c) { return c->deadline; }

/* ---- parking ----------------------------------------------------------------------- */

void weir__ctx_add_waiter(weir_ctx *c, weir__waiter *w)
{
    pthread_mutex_lock(&c->mu);
    w->prev = NULL;
    w->next = c->waiters;
    if (c->waiters) c->waiters->prev = w;
    c->waiters = w;
    pthread_mutex_unlock(&c->mu);
}

void weir__ctx_remove_waiter(weir_ctx *c, weir__waiter *w)
{
    pthread_mutex_lock(&c->mu);
    if (w->prev) w->prev->next = w->next;
    else c->waiters = w->next;
    if (w->next) w->next->prev = w->prev;
    pthread_mutex_unlock(&c->mu);
}

void weir__park(weir__ec *ec, uint32_t key, weir_ctx *ctx, uint64_t deadline_ns)
{
    uint64_t timeout = UINT64_MAX;
    if (deadline_ns != UINT64_MAX) {
        uint64_t now = weir_now_ns();
        if (now >= deadline_ns) return;
        timeout = deadline_ns - now;
    }
    if (!ctx) {
        weir__ec_wait(ec, key, timeout);
        return;
    }
    weir__waiter w = {.ec = ec};
    weir__ctx_add_waiter(ctx, &w);
    /* Registered: a cancel from now on bumps ec's epoch. A cancel before
     * this point is visible in cause. */
    if (!weir_ctx_done(ctx)) weir__ec_wait(ec, key, timeout);
    weir__ctx_remove_waiter(ctx, &w);
}

int weir_ctx_wait(weir_ctx *c, uint64_t timeout_ns)
{
    uint64_t now = weir_now_ns();
    uint64_t until = timeout_ns > UINT64_MAX - now ? UINT64_MAX : now + timeout_ns;
    for (;;) {
        uint32_t key = weir__ec_prepare(&c->done_ec);
        int err = weir_ctx_err(c);
        if (err) return err;
        if (until != UINT64_MAX && weir_now_ns() >= until) return WEIR_EAGAIN;
        weir__park(&c->done_ec, key, NULL, until);
    }
}

/* ---- cancel from a signal handler ---------------------------------------------------- */

/* A handler may only touch atomics and make async-signal-safe syscalls, so
 * it posts the request and wakes a helper thread, which cancels. */
static struct {
    _Atomic(weir_ctx *) ctx;
    _Atomic int cause;
    _Atomic uint32_t word;
    pthread_once_t once;
    int started;
} sig = {.once = PTHREAD_ONCE_INIT};

static void *signal_main(void *unused)
{
    (void)unused;
    uint32_t seen = 0;
    for (;;) {
        uint32_t w = atomic_load_explicit(&sig.word, memory_order_acquire);
        if (w == seen) {
            weir__futex_wait(&sig.word, seen, UINT64_MAX);
            continue;
        }
        seen = w;
        weir_ctx *c = atomic_exchange_explicit(&sig.ctx, NULL,
                                               memory_order_acq_rel);
        if (c) weir_ctx_cancel(c, atomic_load(&sig.cause));
    }
    return NULL;
}

static void signal_start(void)
{
    pthread_t th;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    sig.started = pthread_create(&th, &at, signal_main, NULL) == 0;
    pthread_attr_destroy(&at);
}

int weir_ctx_signal_prepare(void)
{
    pthread_once(&sig.once, signal_start);
    return sig.started ? 0 : WEIR_ETHREAD;
}

void weir_ctx_cancel_from_signal(weir_ctx *c, int cause)
{
    int saved = errno;
    atomic_store_explicit(&sig.cause, cause, memory_order_relaxed);
    atomic_store_explicit(&sig.ctx, c, memory_order_release);
    atomic_fetch_add_explicit(&sig.word, 1, memory_order_release);
    weir__futex_wake(&sig.word, 1);
    errno = saved;
}
