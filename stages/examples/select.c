/*
 * select.c — waiting on several channels at once, Go's
 *
 *     for a != nil || b != nil {
 *         select {
 *         case v, ok := <-a: if !ok { a = nil } else { useA(v) }
 *         case v, ok := <-b: if !ok { b = nil } else { useB(v) }
 *         case <-quit.Done(): return quit.Err()
 *         }
 *     }
 *
 * weir has no select: a blocking receive waits on one channel. The weir way
 * is to poll each channel with weir_chan_try_recv, and when none is ready
 * to back off with weir_ctx_wait — which uses no CPU and returns at once
 * when the quit context ends. The price is latency up to the back-off (100
 * microseconds here). Where the streams are alike, a fan-in is better than
 * polling: let every producer send into one MPMC channel, or in a pipeline
 * use merge(a, b).
 *
 * Two scenes:
 *   1. two producers, each closing its channel when done: the loop reads
 *      both to the end;
 *   2. a producer sends 5 items and then cancels the quit context without
 *      closing its channel: the loop takes what was sent, then stops.
 *
 *   cc -o select select.c $(pkg-config --cflags --libs weir)
 *   ./select
 */
#include <weir.h>

#include <stdint.h>
#include <stdio.h>

#define MS 1000000ull
#define BACKOFF_NS 100000ull /* 100 us: long next to a try_recv, short for a person */
#define APP_STOP (-1000)     /* an application's own cancel cause */

typedef struct feed {
    weir_chan *ch;
    long first, count; /* sends first, first+1, … */
    bool close;        /* close the channel after the last send */
    weir_ctx *cancel;  /* or cancel this context */
    weir_wg *done;
} feed;

static void produce(void *arg)
{
    feed *f = arg;
    for (long v = f->first; v < f->first + f->count; v++)
        if (weir_chan_send(f->ch, (void *)(uintptr_t)v, NULL)) break;
    if (f->close) weir_chan_close(f->ch);
    if (f->cancel) weir_ctx_cancel(f->cancel, APP_STOP);
    weir_wg_done(f->done);
}

typedef struct tally {
    long count[2], sum[2];
} tally;

/* The select loop. @return 0 when both channels are closed and drained,
 * or the quit context's error. */
static int select_loop(weir_chan *chans[2], weir_ctx *quit, tally *t)
{
    bool open[2] = {true, true};
    int start = 0;
    while (open[0] || open[1]) {
        /* Read quit BEFORE polling: if it was already done, everything sent
         * before the cancel is visible to the polls below, so the loop stops
         * only once that is taken. */
        bool quitting = weir_ctx_done(quit);
        bool got = false;
        for (int k = 0; k < 2; k++) {
            int i = (start + k) % 2; /* take turns first, so neither starves */
            if (!open[i]) continue;
            void *item;
            int rc = weir_chan_try_recv(chans[i], &item);
            if (rc == 0) {
                t->count[i]++;
                t->sum[i] += (long)(uintptr_t)item;
                got = true;
            } else if (rc == WEIR_ECLOSED) {
                open[i] = false; /* Go's `a = nil`: stop selecting on it */
            }                    /* WEIR_EAGAIN: nothing there yet */
        }
        start ^= 1;
        if (got) continue;
        if (quitting) return weir_ctx_err(quit);
        /* Go's `default:` with a back-off: no CPU while waiting, and a
         * cancel of quit ends the wait at once. */
        weir_ctx_wait(quit, BACKOFF_NS);
    }
    return 0;
}

static int scene(int n, feed feeds[2], weir_chan *chans[2], weir_ctx *quit)
{
    weir_wg *done;
    int rc = weir_wg_create(&done);
    if (rc) return rc;
    for (int i = 0; i < 2; i++) {
        feeds[i].ch = chans[i];
        feeds[i].done = done;
        if (feeds[i].count == 0) continue;
        weir_wg_add(done, 1);
        if ((rc = weir_go(produce, &feeds[i]))) {
            weir_wg_done(done);
            break;
        }
    }
    tally t = {.count = {0}};
    if (rc == 0) rc = select_loop(chans, quit, &t);
    weir_wg_wait(done, NULL); /* the producers have returned */
    weir_wg_destroy(done);
    printf("%d. a: %ld items (sum %ld), b: %ld items (sum %ld); the loop ended: %s",
           n, t.count[0], t.sum[0], t.count[1], t.sum[1], rc ? weir_errname(rc) : "both closed");
    if (rc) printf(" (cause %d)", weir_ctx_cause(quit));
    printf("\n");
    return rc;
}

int main(void)
{
    weir_chan *chans[2];
    weir_ctx *quit;
    int rc;
    /* Scene 1: 100 items on a, 50 on b, both closed by their producers. */
    if ((rc = weir_chan_create(&chans[0], 4, WEIR_CHAN_SPSC)) ||
        (rc = weir_chan_create(&chans[1], 4, WEIR_CHAN_SPSC)) ||
        (rc = weir_ctx_create(&quit, NULL))) {
        fprintf(stderr, "select: %s\n", weir_strerror(rc));
        return 1;
    }
    feed one[2] = {{.first = 1, .count = 100, .close = true},
                   {.first = 1000, .count = 50, .close = true}};
    int rc1 = scene(1, one, chans, quit);
    weir_ctx_destroy(quit);
    weir_chan_destroy(chans[0]);
    weir_chan_destroy(chans[1]);

    /* Scene 2: 5 items on a, then a's producer cancels quit; b is silent
     * and neither channel is closed. The channel holds 8, so the 5 sends
     * never block. */
    if ((rc = weir_chan_create(&chans[0], 8, WEIR_CHAN_SPSC)) ||
        (rc = weir_chan_create(&chans[1], 8, WEIR_CHAN_SPSC)) ||
        (rc = weir_ctx_create(&quit, NULL))) {
        fprintf(stderr, "select: %s\n", weir_strerror(rc));
        return 1;
    }
    feed two[2] = {{.first = 1, .count = 5, .cancel = quit}, {.count = 0}};
    int rc2 = scene(2, two, chans, quit);
    weir_ctx_destroy(quit);
    weir_chan_destroy(chans[0]);
    weir_chan_destroy(chans[1]);
    return rc1 == 0 && rc2 == WEIR_ECANCELED ? 0 : 1;
}
