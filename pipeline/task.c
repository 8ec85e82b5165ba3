/*
 * task.c — Go's `go`, sync.WaitGroup and errgroup.Group, in C.
 */
#include "internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- go ----------------------------------------------------------------------- */

typedef struct go_start {
    void (*fn)(void *);
    void *arg;
} go_start;

static void *go_main(void *p)
{
    go_start s = *(go_start *)p;
    free(p);
    s.fn(s.arg);
    return NULL;
}

int weir_go(void (*fn)(void *arg), void *arg)
{
    go_start *s = malloc(sizeof *s);
    if (!s) return WEIR_ETHREAD;
    *s = (go_start){fn, arg};
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    int rc = pthread_create(&th, &at, go_main, s);
    pthread_attr_destroy(&at);
    if (rc != 0) {
        free(s);
        return WEIR_ETHREAD;
    }
    return 0;
}

/* ---- wait group ------------------------------------------------------------------- */

struct weir_wg {
    _Atomic long count;
    /* Threads inside weir_wg_add: the one that brings count to zero still
     * touches `zero` after it, and a waiter that saw zero may destroy the
     * group at once. wait returns only when nobody is inside add. */
    _Atomic int busy;
    weir__ec zero; /* notified when count reaches zero */
};

int weir_wg_create(weir_wg **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : WEIR_ENOMEM;
}

void weir_wg_destroy(weir_wg *wg) { free(wg); }

void weir_wg_add(weir_wg *wg, int delta)
{
    atomic_fetch_add_explicit(&wg->busy, 1, memory_order_acq_rel);
    long n = atomic_fetch_add_explicit(&wg->count, delta, memory_order_acq_rel)
             + delta;
    if (n < 0) {
        fprintf(stderr, "weir: weir_wg_add: negative wait group counter\n");
        abort();
    }
    if (n == 0) weir__ec_notify(&wg->zero);
    /* The last touch of wg by this call. */
    atomic_fetch_sub_explicit(&wg->busy, 1, memory_order_release);
}

void weir_wg_done(weir_wg *wg) { weir_wg_add(wg, -1); }

/* Count is zero: let the add() that made it so leave wg first (a few
 * instructions), so that the caller may destroy it. */
static int wg_settled(weir_wg *wg)
{
    while (atomic_load_explicit(&wg->busy, memory_order_acquire) != 0) sched_yield();
    return 0;
}

int weir_wg_wait(weir_wg *wg, weir_ctx *ctx)
{
    for (;;) {
        if (atomic_load_explicit(&wg->count, memory_order_acquire) == 0) return wg_settled(wg);
        if (ctx && weir_ctx_done(ctx)) return weir_ctx_err(ctx);
        uint32_t key = weir__ec_prepare(&wg->zero);
        if (atomic_load_explicit(&wg->count, memory_order_acquire) == 0) return wg_settled(wg);
        weir__park(&wg->zero, key, ctx, UINT64_MAX);
    }
}

/* ---- error group -------------------------------------------------------------------- */

typedef struct group_task {
    weir_group *g;
    int (*fn)(weir_ctx *, void *);
    void *arg;
} group_task;

struct weir_group {
    weir_ctx *ctx;
    pthread_mutex_t mu;
    pthread_t *threads;
    size_t nthreads, cap;
    int err;          /* first failure, under mu */
    char msg[512];
};

int weir_group_create(weir_group **out, weir_ctx *parent)
{
    *out = NULL;
    weir_group *g = calloc(1, sizeof *g);
    if (!g) return WEIR_ENOMEM;
    int rc = weir_ctx_create(&g->ctx, parent);
    if (rc) {
        free(g);
        return rc;
    }
    pthread_mutex_init(&g->mu, NULL);
    *out = g;
    return 0;
}

weir_ctx *weir_group_ctx(weir_group *g) { return g->ctx; }

static int group_failv(weir_group *g, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static int group_failv(weir_group *g, int code, const char *fmt, va_list ap)
{
    pthread_mutex_lock(&g->mu);
    bool first = g->err == 0;
    if (first) {
        g->err = code;
        if (fmt) weir__vfmt(g->msg, sizeof g->msg, fmt, ap);
        else snprintf(g->msg, sizeof g->msg, "%s", weir_strerror(code));
    }
    pthread_mutex_unlock(&g->mu);
    if (first) weir_ctx_cancel(g->ctx, code < 0 ? code : WEIR_ECANCELED);
    return code;
}

int weir_group_fail(weir_group *g, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    group_failv(g, code, fmt, ap);
    va_end(ap);
    return code;
}

static void *group_main(void *p)
{
    group_task t = *(group_task *)p;
    free(p);
    int rc = t.fn(t.g->ctx, t.arg);
    if (rc != 0) weir_group_fail(t.g, rc, NULL);
    return NULL;
}

int weir_group_go(weir_group *g, int (*fn)(weir_ctx *ctx, void *arg), void *arg)
{
    group_task *t = malloc(sizeof *t);
    if (!t) return weir_group_fail(g, WEIR_ETHREAD, "cannot start task: out of memory");
    *t = (group_task){g, fn, arg};
    pthread_mutex_lock(&g->mu);
    if (g->nthreads == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 8;
        pthread_t *nt = realloc(g->threads, cap * sizeof *nt);
        if (!nt) {
            pthread_mutex_unlock(&g->mu);
            free(t);
            return weir_group_fail(g, WEIR_ETHREAD, "cannot start task: out of memory");
        }
        g->threads = nt;
        g->cap = cap;
    }
    int rc = pthread_create(&g->threads[g->nthreads], NULL, group_main, t);
    if (rc == 0) g->nthreads++;
    pthread_mutex_unlock(&g->mu);
    if (rc != 0) {
        free(t);
        return weir_group_fail(g, WEIR_ETHREAD, "cannot start task: %s",
                               strerror(rc));
    }
    return 0;
}

int weir_group_wait(weir_group *g)
{
    for (;;) {
        pthread_mutex_lock(&g->mu);
        if (g->nthreads == 0) {
            int err = g->err;
            pthread_mutex_unlock(&g->mu);
            return err;
        }
        pthread_t th = g->threads[--g->nthreads];
        pthread_mutex_unlock(&g->mu);
        pthread_join(th, NULL);
    }
}

const char *weir_group_errmsg(const weir_group *g) { return g->msg; }

void weir_group_destroy(weir_group *g)
{
    if (!g) return;
    weir_group_wait(g);
    weir_ctx_destroy(g->ctx);
    pthread_mutex_destroy(&g->mu);
    free(g->threads);
    free(g);
}
