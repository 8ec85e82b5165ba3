/*
 * test_ctx.c — contexts (cancellation trees, causes, deadlines, waiting,
 * signal-safe cancel), tasks (weir_go, wait groups, error groups), error
 * names and the version.
 *
 * Blocking cases start a thread, let it block (~50 ms), then cancel and
 * join; assertions are on return codes and states, never on timing.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "weir.h"

/* Criterion 2.4's runner process leaks a 48-byte block when a test with a
 * .timeout runs long beside others, which fails `make asan` though no weir
 * code runs there. Suppress leaks through libcriterion in the runner only:
 * each test runs in a worker process that has BXFI_MAP set (BoxFort), and
 * there nothing is suppressed, so the tests' own leaks are still found. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return getenv("BXFI_MAP") ? "" : "leak:libcriterion.so\n";
}

/* Under ASan a leak in a test's process is printed but does not fail the
 * test, so the tests that are about freeing call LeakSanitizer themselves.
 * Without ASan (plain and TSAN builds) the check is skipped. */
int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

static void assert_no_leaks(void)
{
    if (__lsan_do_recoverable_leak_check)
        cr_assert_eq(__lsan_do_recoverable_leak_check(), 0,
                     "LeakSanitizer found leaks (report above)");
}

#define MS (1000000ull)

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static weir_ctx *mkctx(weir_ctx *parent)
{
    weir_ctx *c = NULL;
    cr_assert_eq(weir_ctx_create(&c, parent), 0);
    cr_assert_not_null(c);
    return c;
}

static void assert_live(const weir_ctx *c, const char *what)
{
    cr_assert(!weir_ctx_done(c), "%s: done, expected live", what);
    cr_assert_eq(weir_ctx_err(c), 0, "%s: err %d", what, weir_ctx_err(c));
    cr_assert_eq(weir_ctx_cause(c), 0, "%s: cause %d", what, weir_ctx_cause(c));
}

static void assert_cancelled(const weir_ctx *c, int cause, const char *what)
{
    cr_assert(weir_ctx_done(c), "%s: live, expected done", what);
    cr_assert_eq(weir_ctx_err(c), WEIR_ECANCELED, "%s: err %d", what,
                 weir_ctx_err(c));
    cr_assert_eq(weir_ctx_cause(c), cause, "%s: cause %d, want %d", what,
                 weir_ctx_cause(c), cause);
}

/* ---- a thread blocked in weir_ctx_wait ------------------------------------- */

struct waiter {
    weir_ctx *ctx;
    uint64_t timeout;
    int rc;
    atomic_bool returned;
    pthread_t th;
};

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    w->rc = weir_ctx_wait(w->ctx, w->timeout);
    atomic_store(&w->returned, true);
    return NULL;
}

static void waiter_start(struct waiter *w, weir_ctx *ctx)
{
    w->ctx = ctx;
    w->timeout = UINT64_MAX;
    w->rc = 12345;
    atomic_init(&w->returned, false);
    cr_assert_eq(pthread_create(&w->th, NULL, waiter_main, w), 0);
}

static void waiter_join(struct waiter *w)
{
    cr_assert_eq(pthread_join(w->th, NULL), 0);
    cr_assert(atomic_load(&w->returned));
}

/* ---- errors and version ------------------------------------------------------- */

Test(errors, strerror_and_errname_for_every_code)
{
    static const struct {
        int code;
        const char *name, *msg;
    } all[] = {
#define ROW(name, value, msg) {name, #name, msg},
        WEIR_ERRORS(ROW)
#undef ROW
    };
    size_t n = sizeof all / sizeof all[0];
    cr_assert_eq(n, 14);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(all[i].code, -(int)(i + 1), "codes are -1..-14 in order");
        cr_assert_str_eq(weir_strerror(all[i].code), all[i].msg);
        cr_assert_str_eq(weir_errname(all[i].code), all[i].name);
    }
    assert_no_leaks();
}

Test(errors, strerror_success_and_unknown)
{
    cr_assert_str_eq(weir_strerror(0), "success");
    static const int unknown[] = {1, 42, -15, -100, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *m = weir_strerror(unknown[i]);
        cr_assert_not_null(m);
        cr_assert_str_eq(m, "unknown error", "strerror(%d)", unknown[i]);
        const char *n = weir_errname(unknown[i]);
        cr_assert_not_null(n);
        cr_assert_str_eq(n, "WEIR_E?", "errname(%d)", unknown[i]);
    }
    assert_no_leaks();
}

Test(errors, errname_of_zero)
{
    /* 0 is not an error code; the header does not say what its name is.
     * It must not be mistaken for one of the codes. */
    const char *n = weir_errname(0);
    cr_assert_not_null(n);
#define NOT_NAME(name, value, msg) cr_assert_str_neq(n, #name);
    WEIR_ERRORS(NOT_NAME)
#undef NOT_NAME
    assert_no_leaks();
}

Test(version, number_and_string)
{
    cr_assert_eq(weir_version(), WEIR_VERSION_NUMBER);
    cr_assert_eq(weir_version(), 100u);
    cr_assert_str_eq(weir_version_string(), WEIR_VERSION_STRING);
    assert_no_leaks();
}

Test(clock, now_is_monotonic)
{
    uint64_t a = weir_now_ns();
    sleep_ms(2);
    uint64_t b = weir_now_ns();
    cr_assert(a > 0);
    cr_assert(b > a, "clock did not advance over a 2 ms sleep");
    assert_no_leaks();
}

/* ---- contexts: cancellation ------------------------------------------------- */

Test(ctx, root_is_live)
{
    weir_ctx *r = mkctx(NULL);
    assert_live(r, "root");
    cr_assert_eq(weir_ctx_deadline(r), UINT64_MAX);
    weir_ctx_destroy(r);
    assert_no_leaks();
}

Test(ctx, destroy_null_is_noop)
{
    weir_ctx_destroy(NULL);
    cr_assert(true);
    assert_no_leaks();
}

Test(ctx, cancel_with_cause)
{
    weir_ctx *r = mkctx(NULL);
    weir_ctx_cancel(r, -42);
    assert_cancelled(r, -42, "root");
    weir_ctx_destroy(r);
    assert_no_leaks();
}

Test(ctx, cancel_with_weir_code_cause)
{
    weir_ctx *r = mkctx(NULL);
    weir_ctx_cancel(r, WEIR_EIO);
    assert_cancelled(r, WEIR_EIO, "root");
    weir_ctx_destroy(r);
    assert_no_leaks();
}

Test(ctx, cancel_cause_zero_or_positive_means_ecanceled)
{
    static const int causes[] = {0, 1, 7, INT32_MAX};
    for (size_t i = 0; i < sizeof causes / sizeof causes[0]; i++) {
        weir_ctx *r = mkctx(NULL);
        weir_ctx *c = mkctx(r);
        weir_ctx_cancel(r, causes[i]);
        assert_cancelled(r, WEIR_ECANCELED, "root");
        assert_cancelled(c, WEIR_ECANCELED, "child");
        weir_ctx_destroy(c);
        weir_ctx_destroy(r);
    }
    assert_no_leaks();
}

Test(ctx, first_cancel_wins)
{
    weir_ctx *r = mkctx(NULL);
    weir_ctx *c = mkctx(r);
    weir_ctx_cancel(r, -42);
    weir_ctx_cancel(r, -43);
    weir_ctx_cancel(r, 0);
    assert_cancelled(r, -42, "root");
    /* The child took the first cause; a later cancel on it changes nothing. */
    weir_ctx_cancel(c, -44);
    assert_cancelled(c, -42, "child");
    weir_ctx_destroy(c);
    weir_ctx_destroy(r);
    assert_no_leaks();
}

Test(ctx, child_cancelled_first_keeps_its_cause)
{
    weir_ctx *r = mkctx(NULL);
    weir_ctx *c = mkctx(r);
    weir_ctx *g = mkctx(c);
    weir_ctx_cancel(c, -1);
    weir_ctx_cancel(r, -2);
    assert_cancelled(r, -2, "root");
    assert_cancelled(c, -1, "child");
    assert_cancelled(g, -1, "grandchild");
    weir_ctx_destroy(g);
    weir_ctx_destroy(c);
    weir_ctx_destroy(r);
    assert_no_leaks();
}

#define FAN 3

/* A tree: root, FAN children, FAN*FAN grandchildren, FAN*FAN*2 leaves. */
struct tree {
    weir_ctx *root;
    weir_ctx *kid[FAN];
    weir_ctx *grand[FAN][FAN];
    weir_ctx *leaf[FAN][FAN][2];
};

static void tree_build(struct tree *t)
{
    t->root = mkctx(NULL);
    for (int i = 0; i < FAN; i++) {
        t->kid[i] = mkctx(t->root);
        for (int j = 0; j < FAN; j++) {
            t->grand[i][j] = mkctx(t->kid[i]);
            for (int k = 0; k < 2; k++)
                t->leaf[i][j][k] = mkctx(t->grand[i][j]);
        }
    }
}

static void tree_free(struct tree *t)
{
    for (int i = 0; i < FAN; i++) {
        for (int j = 0; j < FAN; j++) {
            for (int k = 0; k < 2; k++)
                weir_ctx_destroy(t->leaf[i][j][k]);
            weir_ctx_destroy(t->grand[i][j]);
        }
        weir_ctx_destroy(t->kid[i]);
    }
    weir_ctx_destroy(t->root);
}

Test(ctx, cancel_parent_cancels_all_descendants)
{
    struct tree t;
    tree_build(&t);
    /* All live first. */
    for (int i = 0; i < FAN; i++)
        for (int j = 0; j < FAN; j++)
            for (int k = 0; k < 2; k++)
                assert_live(t.leaf[i][j][k], "leaf");
    weir_ctx_cancel(t.root, -77);
    assert_cancelled(t.root, -77, "root");
    for (int i = 0; i < FAN; i++) {
        assert_cancelled(t.kid[i], -77, "child");
        for (int j = 0; j < FAN; j++) {
            assert_cancelled(t.grand[i][j], -77, "grandchild");
            for (int k = 0; k < 2; k++)
                assert_cancelled(t.leaf[i][j][k], -77, "leaf");
        }
    }
    tree_free(&t);
    assert_no_leaks();
}

Test(ctx, cancel_child_leaves_parent_and_siblings_live)
{
    struct tree t;
    tree_build(&t);
    weir_ctx_cancel(t.kid[1], -5);
    assert_live(t.root, "root");
    for (int i = 0; i < FAN; i++) {
        for (int j = 0; j < FAN; j++) {
            for (int k = 0; k < 2; k++) {
                if (i == 1)
                    assert_cancelled(t.leaf[i][j][k], -5, "leaf under kid 1");
                else
                    assert_live(t.leaf[i][j][k], "leaf elsewhere");
            }
            if (i == 1)
                assert_cancelled(t.grand[i][j], -5, "grand under kid 1");
            else
                assert_live(t.grand[i][j], "grand elsewhere");
        }
        if (i != 1)
            assert_live(t.kid[i], "sibling");
    }
    /* Cancel a grandchild in another branch: only its leaves follow. */
    weir_ctx_cancel(t.grand[2][0], -66);
    assert_cancelled(t.leaf[2][0][0], -66, "leaf");
    assert_live(t.kid[2], "its parent");
    assert_live(t.grand[2][1], "its sibling");
    tree_free(&t);
    assert_no_leaks();
}

Test(ctx, destroyed_child_does_not_affect_parent)
{
    weir_ctx *r = mkctx(NULL);
    for (int i = 0; i < 100; i++) {
        weir_ctx *c = mkctx(r);
        weir_ctx_destroy(c); /* cancels c, never its parent */
    }
    assert_live(r, "root after 100 child create/destroy");
    weir_ctx *c = mkctx(r);
    weir_ctx_cancel(r, -9);
    assert_cancelled(c, -9, "child created after churn");
    weir_ctx_destroy(c);
    weir_ctx_destroy(r);
    assert_no_leaks();
}

Test(ctx, child_of_done_parent_is_born_done)
{
    weir_ctx *r = mkctx(NULL);
    weir_ctx_cancel(r, -31);
    weir_ctx *c = mkctx(r);
    assert_cancelled(c, -31, "child born of a done parent");
    weir_ctx *g = mkctx(c);
    assert_cancelled(g, -31, "grandchild");
    weir_ctx *t = NULL;
    cr_assert_eq(weir_ctx_create_timeout(&t, r, 10000 * MS), 0);
    assert_cancelled(t, -31, "timeout child");
    cr_assert_eq(weir_ctx_wait(c, UINT64_MAX), WEIR_ECANCELED);
    weir_ctx_destroy(t);
    weir_ctx_destroy(g);
    weir_ctx_destroy(c);
    weir_ctx_destroy(r);
    assert_no_leaks();
}

/* ---- contexts: deadlines ---------------------------------------------------------- */

Test(ctx, timeout_expires_with_edeadline, .timeout = 10)
{
    uint64_t before = weir_now_ns();
    weir_ctx *c = NULL;
    cr_assert_eq(weir_ctx_create_timeout(&c, NULL, 50 * MS), 0);
    uint64_t after = weir_now_ns();
    uint64_t d = weir_ctx_deadline(c);
    cr_assert(d >= before + 50 * MS && d <= after + 50 * MS,
              "deadline not 50 ms from creation");
    cr_assert_eq(weir_ctx_wait(c, UINT64_MAX), WEIR_EDEADLINE);
    cr_assert(weir_ctx_done(c));
    cr_assert_eq(weir_ctx_err(c), WEIR_EDEADLINE);
    cr_assert_eq(weir_ctx_cause(c), WEIR_EDEADLINE);
    cr_assert(weir_now_ns() >= d, "done before its deadline");
    weir_ctx_destroy(c);
    assert_no_leaks();
}

Test(ctx, deadline_expiry_reaches_descendants, .timeout = 10)
{
    weir_ctx *r = mkctx(NULL);
    weir_ctx *d = NULL;
    cr_assert_eq(weir_ctx_create_timeout(&d, r, 30 * MS), 0);
    weir_ctx *c = mkctx(d);
    weir_ctx *g = mkctx(c);
    cr_assert_eq(weir_ctx_wait(g, UINT64_MAX), WEIR_EDEADLINE);
    cr_assert_eq(weir_ctx_err(d), WEIR_EDEADLINE);
    cr_assert_eq(weir_ctx_err(c), WEIR_EDEADLINE);
    cr_assert_eq(weir_ctx_cause(c), WEIR_EDEADLINE);
    cr_assert_eq(weir_ctx_err(g), WEIR_EDEADLINE);
    assert_live(r, "the parent of the deadline context");
    weir_ctx_destroy(g);
    weir_ctx_destroy(c);
    weir_ctx_destroy(d);
    weir_ctx_destroy(r);
    assert_no_leaks();
}

Test(ctx, deadline_in_the_past_is_done_at_once)
{
    weir_ctx *c = NULL;
    uint64_t now = weir_now_ns();
    cr_assert_eq(weir_ctx_create_deadline(&c, NULL, now - 1), 0);
    cr_assert_eq(weir_ctx_wait(c, UINT64_MAX), WEIR_EDEADLINE);
    cr_assert_eq(weir_ctx_err(c), WEIR_EDEADLINE);
    weir_ctx_destroy(c);
    assert_no_leaks();
}

Test(ctx, child_inherits_earlier_parent_deadline)
{
    uint64_t now = weir_now_ns();
    uint64_t pd = now + 10000 * MS;
    weir_ctx *p = NULL, *later = NULL, *earlier = NULL;
    cr_assert_eq(weir_ctx_create_deadline(&p, NULL, pd), 0);
    cr_assert_eq(weir_ctx_deadline(p), pd);
    weir_ctx *plain = mkctx(p);
    cr_assert_eq(weir_ctx_deadline(plain), pd, "plain child inherits");
    cr_assert_eq(weir_ctx_create_deadline(&later, p, pd + 5000 * MS), 0);
    cr_assert_eq(weir_ctx_deadline(later), pd, "the parent's is earlier");
    cr_assert_eq(weir_ctx_create_deadline(&earlier, p, pd - 5000 * MS), 0);
    cr_assert_eq(weir_ctx_deadline(earlier), pd - 5000 * MS, "own is earlier");
    weir_ctx *gc = mkctx(earlier);
    cr_assert_eq(weir_ctx_deadline(gc), pd - 5000 * MS);
    weir_ctx *later_timeout = NULL;
    cr_assert_eq(weir_ctx_create_timeout(&later_timeout, p, 60000 * MS), 0);
    cr_assert_eq(weir_ctx_deadline(later_timeout), pd);
    assert_live(later, "later");
    assert_live(earlier, "earlier");
    weir_ctx_destroy(later_timeout);
    weir_ctx_destroy(gc);
    weir_ctx_destroy(earlier);
    weir_ctx_destroy(later);
    weir_ctx_destroy(plain);
    weir_ctx_destroy(p);
    assert_no_leaks();
}

Test(ctx, child_with_later_deadline_ends_with_parent, .timeout = 10)
{
    weir_ctx *p = NULL, *c = NULL;
    cr_assert_eq(weir_ctx_create_timeout(&p, NULL, 30 * MS), 0);
    cr_assert_eq(weir_ctx_create_timeout(&c, p, 60000 * MS), 0);
    cr_assert_eq(weir_ctx_wait(c, UINT64_MAX), WEIR_EDEADLINE);
    cr_assert_eq(weir_ctx_err(c), WEIR_EDEADLINE);
    weir_ctx_destroy(c);
    weir_ctx_destroy(p);
    assert_no_leaks();
}

Test(ctx, cancel_before_deadline_is_ecanceled, .timeout = 10)
{
    weir_ctx *c = NULL;
    cr_assert_eq(weir_ctx_create_timeout(&c, NULL, 30 * MS), 0);
    weir_ctx_cancel(c, -12);
    assert_cancelled(c, -12, "cancelled before its deadline");
    sleep_ms(60);
    assert_cancelled(c, -12, "the deadline passing later changes nothing");
    weir_ctx_destroy(c);
    assert_no_leaks();
}

Test(ctx, destroy_before_deadline, .timeout = 10)
{
    /* The timer must not touch a destroyed context (ASan checks this). */
    for (int i = 0; i < 20; i++) {
        weir_ctx *c = NULL;
        cr_assert_eq(weir_ctx_create_timeout(&c, NULL, (uint64_t)(i % 3) * MS), 0);
        weir_ctx_destroy(c);
    }
    sleep_ms(20);
    cr_assert(true);
    assert_no_leaks();
}

/* ---- contexts: waiting -------------------------------------------------------------- */

Test(ctx, wait_timeout_on_live_ctx_is_eagain, .timeout = 10)
{
    weir_ctx *c = mkctx(NULL);
    cr_assert_eq(weir_ctx_wait(c, 10 * MS), WEIR_EAGAIN);
    cr_assert_eq(weir_ctx_wait(c, 0), WEIR_EAGAIN);
    assert_live(c, "after waits");
    weir_ctx_destroy(c);
    assert_no_leaks();
}

Test(ctx, wait_on_done_ctx_returns_err)
{
    weir_ctx *c = mkctx(NULL);
    weir_ctx_cancel(c, -3);
    cr_assert_eq(weir_ctx_wait(c, 0), WEIR_ECANCELED);
    cr_assert_eq(weir_ctx_wait(c, UINT64_MAX), WEIR_ECANCELED);
    weir_ctx_destroy(c);
    assert_no_leaks();
}

Test(ctx, wait_wakes_on_cancel_from_other_thread, .timeout = 10)
{
    weir_ctx *c = mkctx(NULL);
    struct waiter w;
    waiter_start(&w, c);
    sleep_ms(50);
    cr_assert(!atomic_load(&w.returned), "wait returned on a live context");
    weir_ctx_cancel(c, -9);
    waiter_join(&w);
    cr_assert_eq(w.rc, WEIR_ECANCELED);
    weir_ctx_destroy(c);
    assert_no_leaks();
}

Test(ctx, cancel_of_root_wakes_waiters_on_every_level, .timeout = 10)
{
    struct tree t;
    tree_build(&t);
    struct waiter w[FAN + FAN * FAN];
    int n = 0;
    for (int i = 0; i < FAN; i++) {
        waiter_start(&w[n++], t.kid[i]);
        for (int j = 0; j < FAN; j++)
            waiter_start(&w[n++], t.leaf[i][j][j % 2]);
    }
    sleep_ms(50);
    for (int i = 0; i < n; i++)
        cr_assert(!atomic_load(&w[i].returned));
    weir_ctx_cancel(t.root, -21);
    for (int i = 0; i < n; i++) {
        waiter_join(&w[i]);
        cr_assert_eq(w[i].rc, WEIR_ECANCELED, "waiter %d: %d", i, w[i].rc);
        cr_assert_eq(weir_ctx_cause(w[i].ctx), -21);
    }
    tree_free(&t);
    assert_no_leaks();
}

Test(ctx, wait_wakes_at_deadline_in_other_thread, .timeout = 10)
{
    weir_ctx *c = NULL;
    cr_assert_eq(weir_ctx_create_timeout(&c, NULL, 40 * MS), 0);
    struct waiter w;
    waiter_start(&w, c);
    waiter_join(&w);
    cr_assert_eq(w.rc, WEIR_EDEADLINE);
    weir_ctx_destroy(c);
    assert_no_leaks();
}

/* ---- contexts: signals ------------------------------------------------------ */

static weir_ctx *g_sig_ctx;

static void on_sigusr1(int sig)
{
    (void)sig;
    weir_ctx_cancel_from_signal(g_sig_ctx, WEIR_EINTERRUPT);
}

Test(ctx, cancel_from_signal_handler, .timeout = 10)
{
    cr_assert_eq(weir_ctx_signal_prepare(), 0);
    cr_assert_eq(weir_ctx_signal_prepare(), 0, "prepare may be called twice");
    weir_ctx *r = mkctx(NULL);
    weir_ctx *c = mkctx(r);
    g_sig_ctx = r;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr1;
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGUSR1, &sa, NULL), 0);

    struct waiter w;
    waiter_start(&w, c);
    sleep_ms(20);
    cr_assert(!atomic_load(&w.returned));
    cr_assert_eq(raise(SIGUSR1), 0);
    waiter_join(&w);
    cr_assert_eq(w.rc, WEIR_ECANCELED);
    cr_assert_eq(weir_ctx_wait(r, 5000 * MS), WEIR_ECANCELED);
    assert_cancelled(r, WEIR_EINTERRUPT, "root");
    assert_cancelled(c, WEIR_EINTERRUPT, "child");
    signal(SIGUSR1, SIG_DFL);
    weir_ctx_destroy(c);
    weir_ctx_destroy(r);
    assert_no_leaks();
}

/* ---- weir_go and wait groups ---------------------------------------------- */

#define NTASK 16

struct wg_job {
    weir_wg *wg;
    atomic_int *done_count;
    int *slot;
    int value;
};

static void wg_job_main(void *arg)
{
    struct wg_job *j = arg;
    *j->slot = j->value * 3; /* published to the waiter by weir_wg_done */
    atomic_fetch_add(j->done_count, 1);
    weir_wg_done(j->wg);
}

Test(wg, go_and_wait, .timeout = 10)
{
    weir_wg *wg = NULL;
    cr_assert_eq(weir_wg_create(&wg), 0);
    atomic_int count;
    atomic_init(&count, 0);
    int slots[NTASK] = {0};
    struct wg_job jobs[NTASK];
    weir_wg_add(wg, NTASK);
    for (int i = 0; i < NTASK; i++) {
        jobs[i] = (struct wg_job){wg, &count, &slots[i], i + 1};
        cr_assert_eq(weir_go(wg_job_main, &jobs[i]), 0);
    }
    cr_assert_eq(weir_wg_wait(wg, NULL), 0);
    cr_assert_eq(atomic_load(&count), NTASK);
    for (int i = 0; i < NTASK; i++)
        cr_assert_eq(slots[i], (i + 1) * 3);
    weir_wg_destroy(wg);
    assert_no_leaks();
}

Test(wg, reuse_over_rounds, .timeout = 20)
{
    weir_wg *wg = NULL;
    cr_assert_eq(weir_wg_create(&wg), 0);
    weir_ctx *ctx = mkctx(NULL);
    atomic_int count;
    atomic_init(&count, 0);
    int slots[4];
    struct wg_job jobs[4];
    for (int round = 0; round < 50; round++) {
        weir_wg_add(wg, 4);
        for (int i = 0; i < 4; i++) {
            jobs[i] = (struct wg_job){wg, &count, &slots[i], round};
            cr_assert_eq(weir_go(wg_job_main, &jobs[i]), 0);
        }
        cr_assert_eq(weir_wg_wait(wg, ctx), 0);
        for (int i = 0; i < 4; i++)
            cr_assert_eq(slots[i], round * 3);
    }
    cr_assert_eq(atomic_load(&count), 200);
    weir_ctx_destroy(ctx);
    weir_wg_destroy(wg);
    assert_no_leaks();
}

Test(wg, wait_on_zero_returns_at_once)
{
    weir_wg *wg = NULL;
    cr_assert_eq(weir_wg_create(&wg), 0);
    cr_assert_eq(weir_wg_wait(wg, NULL), 0);
    weir_ctx *ctx = mkctx(NULL);
    cr_assert_eq(weir_wg_wait(wg, ctx), 0);
    weir_wg_add(wg, 3);
    weir_wg_add(wg, -2);
    weir_wg_done(wg);
    cr_assert_eq(weir_wg_wait(wg, ctx), 0);
    weir_ctx_destroy(ctx);
    weir_wg_destroy(wg);
    assert_no_leaks();
}

struct wg_waiter {
    weir_wg *wg;
    weir_ctx *ctx;
    int rc;
    atomic_bool returned;
};

static void *wg_waiter_main(void *arg)
{
    struct wg_waiter *w = arg;
    w->rc = weir_wg_wait(w->wg, w->ctx);
    atomic_store(&w->returned, true);
    return NULL;
}

Test(wg, wait_cancelled_by_ctx, .timeout = 10)
{
    weir_wg *wg = NULL;
    cr_assert_eq(weir_wg_create(&wg), 0);
    weir_ctx *r = mkctx(NULL);
    weir_ctx *c = mkctx(r);
    weir_wg_add(wg, 1);
    struct wg_waiter w = {.wg = wg, .ctx = c, .rc = 12345};
    atomic_init(&w.returned, false);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, wg_waiter_main, &w), 0);
    sleep_ms(50);
    cr_assert(!atomic_load(&w.returned), "wait returned with count 1");
    weir_ctx_cancel(r, -4);
    pthread_join(th, NULL);
    cr_assert_eq(w.rc, WEIR_ECANCELED);
    /* The counter is unchanged: a later wait (no ctx) still needs done(). */
    weir_wg_done(wg);
    cr_assert_eq(weir_wg_wait(wg, NULL), 0);
    weir_ctx_destroy(c);
    weir_ctx_destroy(r);
    weir_wg_destroy(wg);
    assert_no_leaks();
}

Test(wg, wait_with_deadline, .timeout = 10)
{
    weir_wg *wg = NULL;
    cr_assert_eq(weir_wg_create(&wg), 0);
    weir_ctx *c = NULL;
    cr_assert_eq(weir_ctx_create_timeout(&c, NULL, 30 * MS), 0);
    weir_wg_add(wg, 1);
    cr_assert_eq(weir_wg_wait(wg, c), WEIR_EDEADLINE);
    weir_wg_done(wg);
    weir_ctx_destroy(c);
    weir_wg_destroy(wg);
    assert_no_leaks();
}

Test(wg, wait_with_done_ctx)
{
    weir_wg *wg = NULL;
    cr_assert_eq(weir_wg_create(&wg), 0);
    weir_ctx *c = mkctx(NULL);
    weir_ctx_cancel(c, -1);
    weir_wg_add(wg, 2);
    cr_assert_eq(weir_wg_wait(wg, c), WEIR_ECANCELED);
    weir_wg_add(wg, -2);
    weir_ctx_destroy(c);
    weir_wg_destroy(wg);
    assert_no_leaks();
}

Test(wg, destroy_null_is_noop)
{
    weir_wg_destroy(NULL);
    weir_group_destroy(NULL);
    cr_assert(true);
    assert_no_leaks();
}

Test(wg, counter_below_zero_aborts, .signal = SIGABRT)
{
    weir_wg *wg = NULL;
    cr_assert_eq(weir_wg_create(&wg), 0);
    weir_wg_add(wg, 1);
    weir_wg_done(wg);
    weir_wg_done(wg); /* -1: a programming error, aborts */
    cr_assert_fail("weir_wg_done below zero returned");
}

/* ---- error groups -------------------------------------------------------------- */

struct gtask {
    int id;
    int fail_code;        /* 0: block in weir_ctx_wait until cancelled */
    unsigned delay_ms;
    int wait_rc;          /* what weir_ctx_wait returned */
    atomic_bool ran;
};

static int gtask_main(weir_ctx *ctx, void *arg)
{
    struct gtask *t = arg;
    atomic_store(&t->ran, true);
    if (t->fail_code) {
        sleep_ms(t->delay_ms);
        return t->fail_code;
    }
    t->wait_rc = weir_ctx_wait(ctx, UINT64_MAX);
    return t->wait_rc;
}

static int gtask_ok(weir_ctx *ctx, void *arg)
{
    struct gtask *t = arg;
    /* No cr_assert off the test's thread: record, check after the join. */
    t->wait_rc = ctx == NULL ? -2 : weir_ctx_done(ctx) ? -1 : 0;
    sleep_ms(t->delay_ms);
    atomic_store(&t->ran, true);
    return 0;
}

/* A failure recorded without a message: errmsg is "" or, as the library
 * chooses, the code's weir_strerror() — never a later failure's message. */
static void assert_no_message(const weir_group *g, int code)
{
    const char *m = weir_group_errmsg(g);
    cr_assert_not_null(m);
    cr_assert(strcmp(m, "") == 0 || strcmp(m, weir_strerror(code)) == 0,
              "errmsg '%s' for a failure without a message", m);
}

static void gtask_init(struct gtask *t, int n)
{
    for (int i = 0; i < n; i++) {
        t[i] = (struct gtask){.id = i, .wait_rc = 12345};
        atomic_init(&t[i].ran, false);
    }
}

Test(group, all_succeed, .timeout = 10)
{
    weir_group *g = NULL;
    cr_assert_eq(weir_group_create(&g, NULL), 0);
    cr_assert_not_null(weir_group_ctx(g));
    struct gtask t[8];
    gtask_init(t, 8);
    for (int i = 0; i < 8; i++) {
        t[i].delay_ms = (unsigned)(i % 3) * 5;
        cr_assert_eq(weir_group_go(g, gtask_ok, &t[i]), 0);
    }
    cr_assert_eq(weir_group_wait(g), 0);
    for (int i = 0; i < 8; i++) {
        cr_assert(atomic_load(&t[i].ran), "task %d did not run to the end", i);
        cr_assert_eq(t[i].wait_rc, 0, "task %d saw a done ctx", i);
    }
    cr_assert_str_eq(weir_group_errmsg(g), "");
    assert_live(weir_group_ctx(g), "group ctx after success");
    weir_group_destroy(g);
    assert_no_leaks();
}

Test(group, first_failure_cancels_the_others, .timeout = 10)
{
    weir_group *g = NULL;
    cr_assert_eq(weir_group_create(&g, NULL), 0);
    struct gtask t[6];
    gtask_init(t, 6);
    t[3].fail_code = -42;
    t[3].delay_ms = 50;
    for (int i = 0; i < 6; i++)
        cr_assert_eq(weir_group_go(g, gtask_main, &t[i]), 0);
    cr_assert_eq(weir_group_wait(g), -42);
    weir_ctx *gc = weir_group_ctx(g);
    cr_assert(weir_ctx_done(gc));
    cr_assert_eq(weir_ctx_err(gc), WEIR_ECANCELED);
    cr_assert_eq(weir_ctx_cause(gc), -42);
    for (int i = 0; i < 6; i++) {
        cr_assert(atomic_load(&t[i].ran));
        if (i != 3)
            cr_assert_eq(t[i].wait_rc, WEIR_ECANCELED, "task %d woke with %d",
                         i, t[i].wait_rc);
    }
    weir_group_destroy(g);
    assert_no_leaks();
}

Test(group, fail_records_first_message_only, .timeout = 10)
{
    weir_ctx *root = mkctx(NULL);
    weir_group *g = NULL;
    cr_assert_eq(weir_group_create(&g, root), 0);
    struct gtask t[2];
    gtask_init(t, 2);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(weir_group_go(g, gtask_main, &t[i]), 0);
    cr_assert_eq(weir_group_fail(g, -50, "bad record %d in %s", 7, "x.csv"), -50);
    cr_assert_eq(weir_group_fail(g, -51, "second failure"), -51);
    cr_assert_eq(weir_group_fail(g, WEIR_EIO, NULL), WEIR_EIO);
    cr_assert_eq(weir_group_wait(g), -50);
    cr_assert_str_eq(weir_group_errmsg(g), "bad record 7 in x.csv");
    cr_assert_eq(weir_ctx_cause(weir_group_ctx(g)), -50);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(t[i].wait_rc, WEIR_ECANCELED);
    assert_live(root, "the group's parent");
    weir_group_destroy(g);
    weir_ctx_destroy(root);
    assert_no_leaks();
}

Test(group, fail_without_message, .timeout = 10)
{
    weir_group *g = NULL;
    cr_assert_eq(weir_group_create(&g, NULL), 0);
    cr_assert_eq(weir_group_fail(g, -60, NULL), -60);
    cr_assert_eq(weir_group_fail(g, -61, "later"), -61);
    cr_assert_eq(weir_group_wait(g), -60);
    assert_no_message(g, -60);
    cr_assert_eq(weir_ctx_cause(weir_group_ctx(g)), -60);
    weir_group_destroy(g);
    assert_no_leaks();
}

Test(group, task_failure_beats_later_fail_call, .timeout = 10)
{
    weir_group *g = NULL;
    cr_assert_eq(weir_group_create(&g, NULL), 0);
    struct gtask t[1];
    gtask_init(t, 1);
    t[0].fail_code = -70;
    cr_assert_eq(weir_group_go(g, gtask_main, &t[0]), 0);
    cr_assert_eq(weir_ctx_wait(weir_group_ctx(g), UINT64_MAX), WEIR_ECANCELED);
    weir_group_fail(g, -71, "too late");
    cr_assert_eq(weir_group_wait(g), -70);
    assert_no_message(g, -70);
    weir_group_destroy(g);
    assert_no_leaks();
}

Test(group, parent_cancel_cancels_group_ctx, .timeout = 10)
{
    weir_ctx *root = mkctx(NULL);
    weir_ctx *mid = mkctx(root);
    weir_group *g = NULL;
    cr_assert_eq(weir_group_create(&g, mid), 0);
    struct gtask t[4];
    gtask_init(t, 4);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(weir_group_go(g, gtask_main, &t[i]), 0);
    sleep_ms(50);
    assert_live(weir_group_ctx(g), "group ctx before the cancel");
    weir_ctx_cancel(root, -8);
    cr_assert_eq(weir_group_wait(g), WEIR_ECANCELED,
                 "tasks returned ECANCELED, the first non-zero result");
    assert_cancelled(weir_group_ctx(g), -8, "group ctx");
    for (int i = 0; i < 4; i++)
        cr_assert_eq(t[i].wait_rc, WEIR_ECANCELED);
    weir_group_destroy(g);
    weir_ctx_destroy(mid);
    weir_ctx_destroy(root);
    assert_no_leaks();
}

Test(group, born_in_done_parent, .timeout = 10)
{
    weir_ctx *root = mkctx(NULL);
    weir_ctx_cancel(root, -13);
    weir_group *g = NULL;
    cr_assert_eq(weir_group_create(&g, root), 0);
    assert_cancelled(weir_group_ctx(g), -13, "group ctx");
    struct gtask t[1];
    gtask_init(t, 1);
    cr_assert_eq(weir_group_go(g, gtask_main, &t[0]), 0);
    cr_assert_eq(weir_group_wait(g), WEIR_ECANCELED);
    weir_group_destroy(g);
    weir_ctx_destroy(root);
    assert_no_leaks();
}

Test(group, destroy_waits_for_running_tasks, .timeout = 10)
{
    weir_group *g = NULL;
    cr_assert_eq(weir_group_create(&g, NULL), 0);
    struct gtask t[3];
    gtask_init(t, 3);
    for (int i = 0; i < 3; i++) {
        t[i].delay_ms = 30;
        cr_assert_eq(weir_group_go(g, gtask_ok, &t[i]), 0);
    }
    weir_group_destroy(g); /* no wait: destroy joins */
    for (int i = 0; i < 3; i++)
        cr_assert(atomic_load(&t[i].ran), "task %d still running", i);
    assert_no_leaks();
}

Test(group, wait_with_no_tasks)
{
    weir_group *g = NULL;
    cr_assert_eq(weir_group_create(&g, NULL), 0);
    cr_assert_eq(weir_group_wait(g), 0);
    cr_assert_str_eq(weir_group_errmsg(g), "");
    weir_group_destroy(g);
    assert_no_leaks();
}
