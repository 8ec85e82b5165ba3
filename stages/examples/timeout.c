/*
 * timeout.c — deadlines and cancellation with weir_ctx, Go's
 *
 *     ctx, cancel := context.WithTimeout(parent, 50*time.Millisecond)
 *     defer cancel()
 *     select {
 *     case r := <-results: use(r)
 *     case <-ctx.Done():   return ctx.Err()    // DeadlineExceeded
 *     }
 *
 * In weir every blocking call takes the context: a receive under a context
 * with a timeout IS that select. Four small scenes:
 *
 *   1. a receive on a channel nobody sends to, under a 50 ms timeout;
 *   2. a worker that needs 10 steps of 100 ms, under a 50 ms deadline:
 *      it waits between steps with weir_ctx_wait (Go's select on
 *      time.After and ctx.Done), so the deadline stops it at once;
 *   3. a result that arrives in time;
 *   4. a context tree: a child inherits its parent's deadline, and
 *      cancelling the parent with a cause of our own ends the child too.
 *
 *   cc -o timeout timeout.c $(pkg-config --cflags --libs weir)
 *   ./timeout
 */
#include <weir.h>

#include <stdint.h>
#include <stdio.h>

#define MS 1000000ull /* nanoseconds */

/* An application's own cause: any negative code outside weir's list. */
#define APP_SHUTDOWN (-1000)

static int scene_silent_channel(void)
{
    weir_chan *c;
    weir_ctx *ctx;
    int rc = weir_chan_create(&c, 1, WEIR_CHAN_SPSC);
    if (rc) return rc;
    if ((rc = weir_ctx_create_timeout(&ctx, NULL, 50 * MS))) {
        weir_chan_destroy(c);
        return rc;
    }
    void *item;
    rc = weir_chan_recv(c, &item, ctx); /* parks; the deadline wakes it */
    printf("1. receive under a 50 ms timeout, nothing sent: %s (%s)\n",
           weir_errname(rc), weir_strerror(rc));
    weir_ctx_destroy(ctx);
    weir_chan_destroy(c);
    return rc == WEIR_EDEADLINE ? 0 : -1;
}

typedef struct worker {
    weir_ctx *ctx;
    weir_wg *done;
    int steps, rc;
} worker;

static void slow_work(void *arg)
{
    worker *w = arg;
    for (w->steps = 0; w->steps < 10; w->steps++) {
        /* "Sleep" 100 ms, unless the context ends first: EAGAIN means the
         * time passed and the context is still live. */
        int rc = weir_ctx_wait(w->ctx, 100 * MS);
        if (rc != WEIR_EAGAIN) {
            w->rc = rc;
            break;
        }
    }
    weir_wg_done(w->done);
}

static int scene_slow_worker(void)
{
    worker w = {0};
    int rc = weir_wg_create(&w.done);
    if (rc) return rc;
    if ((rc = weir_ctx_create_timeout(&w.ctx, NULL, 50 * MS))) {
        weir_wg_destroy(w.done);
        return rc;
    }
    weir_wg_add(w.done, 1);
    if ((rc = weir_go(slow_work, &w))) {
        weir_wg_done(w.done);
    } else {
        weir_wg_wait(w.done, NULL);
        printf("2. a worker needing 10 steps of 100 ms, under a 50 ms deadline: "
               "%s after %s\n",
               weir_errname(w.rc), w.steps < 10 ? "fewer than 10 steps" : "all 10 steps");
    }
    weir_ctx_destroy(w.ctx);
    weir_wg_destroy(w.done);
    return rc ? rc : w.rc == WEIR_EDEADLINE && w.steps < 10 ? 0 : -1;
}

static void answer(void *arg)
{
    /* Nobody else sends on this channel and it has room: the send cannot
     * block, so it needs no context. */
    weir_chan_send(arg, (void *)(uintptr_t)42, NULL);
}

static int scene_in_time(void)
{
    weir_chan *results;
    weir_ctx *ctx;
    int rc = weir_chan_create(&results, 1, WEIR_CHAN_SPSC);
    if (rc) return rc;
    if ((rc = weir_ctx_create_timeout(&ctx, NULL, 10000 * MS))) {
        weir_chan_destroy(results);
        return rc;
    }
    void *item = NULL;
    if ((rc = weir_go(answer, results)) == 0) {
        rc = weir_chan_recv(results, &item, ctx);
        if (rc == 0)
            printf("3. a result that comes at once, under a 10 s timeout: %ld\n",
                   (long)(uintptr_t)item);
        else
            printf("3. no result: %s\n", weir_errname(rc));
    }
    weir_ctx_destroy(ctx);
    weir_chan_destroy(results);
    return rc;
}

static int scene_tree(void)
{
    weir_ctx *parent, *child;
    int rc = weir_ctx_create_timeout(&parent, NULL, 60000 * MS);
    if (rc) return rc;
    if ((rc = weir_ctx_create(&child, parent))) {
        weir_ctx_destroy(parent);
        return rc;
    }
    printf("4. the child has its parent's deadline: %s\n",
           weir_ctx_deadline(child) == weir_ctx_deadline(parent) ? "yes" : "no");
    printf("   before the cancel: child done %s, err %s\n",
           weir_ctx_done(child) ? "yes" : "no", weir_errname(weir_ctx_err(child)));
    weir_ctx_cancel(parent, APP_SHUTDOWN); /* reaches every descendant */
    /* Already done: wait returns at once with the context's error. */
    int waited = weir_ctx_wait(child, UINT64_MAX);
    printf("   after cancelling the parent with cause %d: child done %s, err %s, "
           "cause %d, wait %s\n",
           APP_SHUTDOWN, weir_ctx_done(child) ? "yes" : "no",
           weir_errname(weir_ctx_err(child)), weir_ctx_cause(child), weir_errname(waited));
    weir_ctx_destroy(child); /* children before their parent */
    weir_ctx_destroy(parent);
    return 0;
}

int main(void)
{
    int failed = 0;
    failed |= scene_silent_channel() != 0;
    failed |= scene_slow_worker() != 0;
    failed |= scene_in_time() != 0;
    failed |= scene_tree() != 0;
    return failed;
}
