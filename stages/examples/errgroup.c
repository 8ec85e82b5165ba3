/*
 * errgroup.c — a pipeline of tasks under an error group, Go's
 *
 *     g, ctx := errgroup.WithContext(parent)
 *     g.Go(generate)                      // 1, 2, 3, … → nums
 *     for i := 0; i < 2; i++ { g.Go(square) }   // nums → squares
 *     g.Go(func() error { squarers.Wait(); close(squares); return nil })
 *     g.Go(sum)                           // squares → total
 *     err := g.Wait()                     // the first error, or nil
 *
 * written with weir_group, weir_chan and weir_wg. Every task blocks only in
 * calls that take the group's context, so when one task fails, the group
 * cancels that context and every other task wakes up and returns: no task
 * is left blocked on a channel nobody will serve.
 *
 * The program runs the pipeline twice: once to the end (the sum of the
 * squares of 1..1000), and once with an endless generator and a squarer
 * that refuses the number 13 — the failure stops everything.
 *
 *   cc -o errgroup errgroup.c $(pkg-config --cflags --libs weir)
 *   ./errgroup
 */
#include <weir.h>

#include <stdint.h>
#include <stdio.h>

#define SQUARERS 2

typedef struct pipeline {
    long count;       /* numbers to generate; 0: endless */
    long unlucky;     /* a squarer fails on this number; 0: never */
    weir_chan *nums;  /* generate → square */
    weir_chan *squares; /* square → sum */
    weir_wg *squarers;  /* the squarers still running */
    weir_group *group;
    long total;
    int generate_rc, sum_rc;
} pipeline;

/* Channels carry pointers, and NULL may not be sent: small positive
 * numbers travel as pointer-sized integers. */
static void *num_item(long v) { return (void *)(uintptr_t)v; }
static long item_num(void *p) { return (long)(uintptr_t)p; }

static int generate(weir_ctx *ctx, void *arg)
{
    pipeline *p = arg;
    int rc = 0;
    for (long v = 1; p->count == 0 || v <= p->count; v++) {
        /* A send with room succeeds even when ctx is done: a loop that may
         * never block must look at the context itself. */
        if (weir_ctx_done(ctx)) {
            rc = weir_ctx_err(ctx);
            break;
        }
        if ((rc = weir_chan_send(p->nums, num_item(v), ctx))) break;
    }
    weir_chan_close(p->nums); /* no more numbers: the squarers drain and end */
    p->generate_rc = rc;
    return rc;
}

static int square(weir_ctx *ctx, void *arg)
{
    pipeline *p = arg;
    void *item;
    int rc = 0;
    while (!weir_ctx_done(ctx) && (rc = weir_chan_recv(p->nums, &item, ctx)) == 0) {
        long v = item_num(item);
        if (v == p->unlucky) {
            /* Record the first failure with a message; the group cancels
             * its context, and the other tasks see it. */
            weir_wg_done(p->squarers);
            return weir_group_fail(p->group, WEIR_EDATA, "square: %ld is an unlucky number", v);
        }
        if ((rc = weir_chan_send(p->squares, num_item(v * v), ctx))) break;
    }
    weir_wg_done(p->squarers);
    if (weir_ctx_done(ctx)) return weir_ctx_err(ctx);
    return rc == WEIR_ECLOSED ? 0 : rc; /* nums closed and drained: done */
}

/* After the last squarer: close squares, so that sum sees the end. */
static int close_squares(weir_ctx *ctx, void *arg)
{
    pipeline *p = arg;
    int rc = weir_wg_wait(p->squarers, ctx); /* cancelled: returns at once */
    weir_chan_close(p->squares);
    return rc;
}

static int sum(weir_ctx *ctx, void *arg)
{
    pipeline *p = arg;
    void *item;
    int rc;
    while ((rc = weir_chan_recv(p->squares, &item, ctx)) == 0) p->total += item_num(item);
    /* Closed after a cancel is not the end of the stream: the total is
     * partial, so say so. */
    rc = weir_ctx_done(ctx) ? weir_ctx_err(ctx) : rc == WEIR_ECLOSED ? 0 : rc;
    p->sum_rc = rc;
    return rc;
}

static int run(long count, long unlucky)
{
    pipeline p = {.count = count, .unlucky = unlucky};
    weir_group *g = NULL;
    int rc = weir_chan_create(&p.nums, 8, WEIR_CHAN_MPMC); /* two receivers */
    if (!rc) rc = weir_chan_create(&p.squares, 8, WEIR_CHAN_MPMC); /* two senders */
    if (!rc) rc = weir_wg_create(&p.squarers);
    if (!rc) rc = weir_group_create(&g, NULL); /* NULL: no parent context */
    if (rc) {
        fprintf(stderr, "errgroup: %s\n", weir_strerror(rc));
        return 1;
    }
    p.group = g;
    weir_wg_add(p.squarers, SQUARERS);
    /* A task that cannot start fails the group (WEIR_ETHREAD): the others
     * are cancelled, and wait reports it. So there is nothing to check
     * here that wait does not check. */
    weir_group_go(g, generate, &p);
    for (int i = 0; i < SQUARERS; i++) weir_group_go(g, square, &p);
    weir_group_go(g, close_squares, &p);
    weir_group_go(g, sum, &p);

    rc = weir_group_wait(g); /* every task has returned */
    if (rc == 0) {
        printf("sum of the squares of 1..%ld: %ld\n", count, p.total);
    } else {
        printf("the group failed: %s: %s\n", weir_errname(rc), weir_group_errmsg(g));
        printf("  its context's cause: %s\n", weir_errname(weir_ctx_cause(weir_group_ctx(g))));
        printf("  the endless generator stopped: %s\n", weir_errname(p.generate_rc));
        printf("  the sum stopped: %s\n", weir_errname(p.sum_rc));
    }
    weir_group_destroy(g);
    /* The numbers in flight are plain integers: nothing to free. Items that
     * own memory would be drained and freed here. */
    weir_wg_destroy(p.squarers);
    weir_chan_destroy(p.squares);
    weir_chan_destroy(p.nums);
    return rc;
}

int main(void)
{
    int ok = run(1000, 0) == 0;
    ok &= run(0, 13) == WEIR_EDATA;
    return ok ? 0 : 1;
}
