/*
 * ctx_stress.c — cancellation reaches every blocked thread, every time.
 *
 *   ctx_stress [--seconds S] [--seed N] [--config SUBSTRING]
 *
 * Each iteration builds a fresh random context tree (random depth and fan)
 * and starts 16 threads, each blocked on one of its nodes in
 * weir_chan_recv / weir_chan_send / their batched forms (MPMC and SPSC),
 * weir_wg_wait or weir_ctx_wait. Then, at a random moment:
 *
 *   tree-cancel    the root is cancelled with a random cause;
 *   tree-deadline  random nodes carry 1-20 ms deadlines, and the root is
 *                  cancelled at a random moment (before or after them);
 *   subtree        a random inner node is cancelled, then the root;
 *   group          an error group on a random node: one random task fails,
 *                  the others block until the group's context ends;
 *   group-cancel   the same while the root is cancelled at a random moment.
 *
 * Every blocked thread must return, with weir_ctx_err() of its node
 * (WEIR_ECANCELED or WEIR_EDEADLINE), its node must carry the right cause,
 * and no channel may have lost or gained an item. Threads are started
 * with pthread_create or weir_go (then awaited with a wait group). A
 * watchdog turns a hang into a failure naming the scenario and iteration.
 * The last line is "N passed, M failed"; exit 1 if anything failed.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "weir.h"

#define NTHREADS 16
#define MAXNODES 24
#define MAXTASKS 8
#define MS UINT64_C(1000000)

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint64_t rnd(uint64_t *s, uint64_t n) { return splitmix(s) % n; }

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void die(const char *what)
{
    fprintf(stderr, "ctx_stress: %s\n", what);
    exit(1);
}

enum scenario { S_CANCEL, S_DEADLINE, S_SUBTREE, S_GROUP, S_GROUP_CANCEL, S_N };
static const char *const scenario_name[S_N] = {
    "tree-cancel", "tree-deadline", "subtree", "group", "group-cancel"};

/* ---- watchdog ------------------------------------------------------------ */

static atomic_int wd_scenario;
static _Atomic uint64_t wd_progress; /* weir_now_ns() of the last iteration */
static atomic_long wd_iteration;
static atomic_int wd_running;        /* threads not yet returned */

static void *watchdog_main(void *arg)
{
    (void)arg;
    for (;;) {
        sleep_ns(100 * MS);
        uint64_t p = atomic_load(&wd_progress);
        if (p != 0 && weir_now_ns() - p > 30000 * MS) {
            fprintf(stderr,
                    "ctx_stress: HANG in scenario '%s', iteration %ld: "
                    "%d blocked thread(s) never returned\n",
                    scenario_name[atomic_load(&wd_scenario)],
                    atomic_load(&wd_iteration),
                    atomic_load(&wd_running));
            fflush(stderr);
            _exit(1);
        }
    }
    return NULL;
}

/* ---- the context tree ------------------------------------------------------- */

struct tree {
    int n;
    weir_ctx *ctx[MAXNODES];
    int parent[MAXNODES];
    bool deadline[MAXNODES];
};

static void tree_build(struct tree *t, uint64_t *rng, bool deadlines)
{
    int maxdepth = 1 + (int)rnd(rng, 5);
    int depth[MAXNODES];
    t->n = 2 + (int)rnd(rng, MAXNODES - 1);
    if (weir_ctx_create(&t->ctx[0], NULL) != 0)
        die("weir_ctx_create failed");
    t->parent[0] = -1;
    t->deadline[0] = false;
    depth[0] = 0;
    for (int i = 1; i < t->n; i++) {
        int p;
        do
            p = (int)rnd(rng, (uint64_t)i);
        while (depth[p] >= maxdepth);
        t->parent[i] = p;
        depth[i] = depth[p] + 1;
        t->deadline[i] = deadlines && rnd(rng, 4) == 0;
        int rc = t->deadline[i]
                     ? weir_ctx_create_timeout(&t->ctx[i], t->ctx[p],
                                               (1 + rnd(rng, 20)) * MS)
                     : weir_ctx_create(&t->ctx[i], t->ctx[p]);
        if (rc != 0)
            die("weir_ctx_create failed");
    }
}

static void tree_free(struct tree *t)
{
    for (int i = t->n - 1; i >= 0; i--) /* children were created later */
        weir_ctx_destroy(t->ctx[i]);
}

static bool in_subtree(const struct tree *t, int node, int top)
{
    for (; node >= 0; node = t->parent[node])
        if (node == top)
            return true;
    return false;
}

/* ---- the shared objects threads block on -------------------------------------- */

struct objects {
    weir_chan *mpmc_empty, *mpmc_full; /* any number of threads */
    weir_chan *spsc_empty, *spsc_full; /* one thread each */
    weir_wg *wg;                       /* count 1 until the end */
};

#define FULL_ITEM(i) ((void *)(uintptr_t)(0x1000 + (i)))

static void objects_create(struct objects *o)
{
    if (weir_chan_create(&o->mpmc_empty, 4, WEIR_CHAN_MPMC) ||
        weir_chan_create(&o->mpmc_full, 2, WEIR_CHAN_MPMC) ||
        weir_chan_create(&o->spsc_empty, 2, WEIR_CHAN_SPSC) ||
        weir_chan_create(&o->spsc_full, 2, WEIR_CHAN_SPSC) ||
        weir_wg_create(&o->wg))
        die("create failed");
    for (int i = 0; i < 2; i++)
        if (weir_chan_try_send(o->mpmc_full, FULL_ITEM(i)) ||
            weir_chan_try_send(o->spsc_full, FULL_ITEM(i)))
            die("prefill failed");
    weir_wg_add(o->wg, 1);
}

/* Check that nothing was transferred, then free. @return a problem or NULL. */
static const char *objects_check_free(struct objects *o)
{
    const char *bad = NULL;
    void *it;
    if (weir_chan_len(o->mpmc_empty) != 0 || weir_chan_len(o->spsc_empty) != 0)
        bad = "an item appeared in an empty channel";
    for (int i = 0; i < 2; i++) {
        if (weir_chan_try_recv(o->mpmc_full, &it) != 0 || it != FULL_ITEM(i))
            bad = "the full MPMC channel lost or reordered an item";
        if (weir_chan_try_recv(o->spsc_full, &it) != 0 || it != FULL_ITEM(i))
            bad = "the full SPSC channel lost or reordered an item";
    }
    if (weir_chan_try_recv(o->mpmc_full, &it) != WEIR_EAGAIN ||
        weir_chan_try_recv(o->spsc_full, &it) != WEIR_EAGAIN)
        bad = "a cancelled send was delivered";
    weir_wg_done(o->wg);
    if (weir_wg_wait(o->wg, NULL) != 0)
        bad = "weir_wg_wait(NULL) failed at count 0";
    weir_chan_destroy(o->mpmc_empty);
    weir_chan_destroy(o->mpmc_full);
    weir_chan_destroy(o->spsc_empty);
    weir_chan_destroy(o->spsc_full);
    weir_wg_destroy(o->wg);
    return bad;
}

enum op {
    OP_SPSC_RECV, OP_SPSC_SEND, /* threads 0 and 1 only */
    OP_RECV, OP_SEND, OP_RECV_MANY, OP_SEND_MANY, OP_WG, OP_CTX_WAIT,
    OP_N
};

static long do_op(enum op op, struct objects *o, weir_ctx *ctx)
{
    void *it = NULL, *items[4] = {FULL_ITEM(7), FULL_ITEM(8), FULL_ITEM(9),
                                  FULL_ITEM(10)};
    switch (op) {
    case OP_SPSC_RECV: return weir_chan_recv(o->spsc_empty, &it, ctx);
    case OP_SPSC_SEND: return weir_chan_send(o->spsc_full, FULL_ITEM(5), ctx);
    case OP_RECV: return weir_chan_recv(o->mpmc_empty, &it, ctx);
    case OP_SEND: return weir_chan_send(o->mpmc_full, FULL_ITEM(6), ctx);
    case OP_RECV_MANY: return weir_chan_recv_many(o->mpmc_empty, items, 4, ctx);
    case OP_SEND_MANY: return weir_chan_send_many(o->mpmc_full, items, 4, ctx);
    case OP_WG: return weir_wg_wait(o->wg, ctx);
    default: return weir_ctx_wait(ctx, UINT64_MAX);
    }
}

/* ---- blocked threads ---------------------------------------------------------- */

struct blocked {
    struct objects *o;
    weir_ctx *ctx;
    int node;
    enum op op;
    long rc;
    bool via_go;
    weir_wg *finished; /* weir_go threads report here */
    pthread_t th;
};

static void blocked_run(struct blocked *b)
{
    b->rc = do_op(b->op, b->o, b->ctx);
    atomic_fetch_sub(&wd_running, 1);
}

static void *blocked_pthread(void *arg)
{
    blocked_run(arg);
    return NULL;
}

static void blocked_go(void *arg)
{
    struct blocked *b = arg;
    weir_wg *finished = b->finished;
    blocked_run(b);
    weir_wg_done(finished); /* the last touch of b's memory is above */
}

struct stats {
    long iterations, woken, deadline_hits, failures;
    char first_failure[256];
};

#define FAIL(st, ...)                                                         \
    do {                                                                      \
        if ((st)->failures++ == 0)                                            \
            snprintf((st)->first_failure, sizeof (st)->first_failure,          \
                     __VA_ARGS__);                                            \
    } while (0)

static weir_wg *g_finished; /* lives for the whole program */

static void tree_iteration(enum scenario sc, uint64_t *rng, struct stats *st)
{
    struct tree t;
    struct objects o;
    struct blocked b[NTHREADS];
    tree_build(&t, rng, sc == S_DEADLINE);
    objects_create(&o);

    int ngo = 0;
    atomic_store(&wd_running, NTHREADS);
    for (int i = 0; i < NTHREADS; i++) {
        b[i] = (struct blocked){
            .o = &o,
            .node = (int)rnd(rng, (uint64_t)t.n),
            .op = i < 2 ? (enum op)i
                        : (enum op)(OP_RECV + (int)rnd(rng, OP_N - OP_RECV)),
            .rc = 12345,
            .via_go = rnd(rng, 2) == 0,
            .finished = g_finished,
        };
        b[i].ctx = t.ctx[b[i].node];
        if (b[i].via_go) {
            weir_wg_add(g_finished, 1);
            if (weir_go(blocked_go, &b[i]) != 0)
                die("weir_go failed");
            ngo++;
        } else if (pthread_create(&b[i].th, NULL, blocked_pthread, &b[i]) != 0) {
            die("pthread_create failed");
        }
    }

    int c0 = -100 - (int)rnd(rng, 100), c1 = -300 - (int)rnd(rng, 100);
    int sub = 1 + (int)rnd(rng, (uint64_t)(t.n - 1));
    sleep_ns(rnd(rng, 4) == 0 ? 0 : rnd(rng, 25 * MS));
    if (sc == S_SUBTREE) {
        weir_ctx_cancel(t.ctx[sub], c1);
        sleep_ns(rnd(rng, 3 * MS));
    }
    weir_ctx_cancel(t.ctx[0], c0);

    if (weir_wg_wait(g_finished, NULL) != 0)
        FAIL(st, "weir_wg_wait(NULL) on the finished group failed");
    for (int i = 0; i < NTHREADS; i++)
        if (!b[i].via_go)
            pthread_join(b[i].th, NULL);

    for (int i = 0; i < t.n; i++) {
        int err = weir_ctx_err(t.ctx[i]), cause = weir_ctx_cause(t.ctx[i]);
        if (!weir_ctx_done(t.ctx[i]))
            FAIL(st, "node %d live after the root was cancelled", i);
        int want = c0;
        if (sc == S_SUBTREE && in_subtree(&t, i, sub))
            want = c1;
        if (err == WEIR_EDEADLINE) {
            if (sc != S_DEADLINE || cause != WEIR_EDEADLINE)
                FAIL(st, "node %d: err EDEADLINE, cause %d", i, cause);
        } else if (err != WEIR_ECANCELED || cause != want) {
            FAIL(st, "node %d: err %d cause %d, want ECANCELED cause %d", i,
                 err, cause, want);
        }
    }
    for (int i = 0; i < NTHREADS; i++) {
        long want = weir_ctx_err(b[i].ctx);
        if (b[i].rc != want)
            FAIL(st, "thread %d (op %d on node %d) returned %ld, node err %ld",
                 i, (int)b[i].op, b[i].node, b[i].rc, want);
        st->woken++;
        st->deadline_hits += b[i].rc == WEIR_EDEADLINE;
    }
    const char *bad = objects_check_free(&o);
    if (bad)
        FAIL(st, "%s", bad);
    tree_free(&t);
}

/* ---- error groups --------------------------------------------------------------- */

struct task {
    struct objects *o;
    enum op op;      /* for the blockers */
    int fail_code;   /* non-zero: the failing task */
    uint64_t delay;  /* before failing */
    long rc;         /* what the task returned */
};

static int task_main(weir_ctx *ctx, void *arg)
{
    struct task *k = arg;
    if (k->fail_code) {
        int rc = weir_ctx_wait(ctx, k->delay);
        k->rc = rc == WEIR_EAGAIN ? k->fail_code : rc;
    } else {
        k->rc = do_op(k->op, k->o, ctx);
    }
    return (int)k->rc;
}

static void group_iteration(enum scenario sc, uint64_t *rng, struct stats *st)
{
    /* The group hangs below a chain 0-3 deep under the root. */
    weir_ctx *chain[4];
    int depth = 1 + (int)rnd(rng, 4);
    for (int i = 0; i < depth; i++)
        if (weir_ctx_create(&chain[i], i ? chain[i - 1] : NULL) != 0)
            die("weir_ctx_create failed");
    struct objects o;
    objects_create(&o);
    weir_group *g = NULL;
    if (weir_group_create(&g, chain[depth - 1]) != 0)
        die("weir_group_create failed");

    int ntask = 2 + (int)rnd(rng, MAXTASKS - 1);
    int failer = (int)rnd(rng, (uint64_t)ntask);
    int code = -2000 - (int)rnd(rng, 1000);
    bool by_fail_call = rnd(rng, 3) == 0; /* weir_group_fail instead */
    struct task k[MAXTASKS];
    for (int i = 0; i < ntask; i++) {
        k[i] = (struct task){
            .o = &o,
            .op = (enum op)(OP_RECV + (int)rnd(rng, OP_N - OP_RECV)),
            .fail_code = (i == failer && !by_fail_call) ? code : 0,
            .delay = rnd(rng, 5 * MS),
            .rc = 12345,
        };
        if (weir_group_go(g, task_main, &k[i]) != 0)
            die("weir_group_go failed");
    }
    int c0 = -100 - (int)rnd(rng, 100);
    char msg[64];
    snprintf(msg, sizeof msg, "task %d failed", failer);
    if (sc == S_GROUP_CANCEL) {
        sleep_ns(rnd(rng, 6 * MS));
        weir_ctx_cancel(chain[0], c0);
    }
    if (by_fail_call) {
        sleep_ns(rnd(rng, 5 * MS));
        weir_group_fail(g, code, "%s", msg);
    }
    int rc = weir_group_wait(g);
    weir_ctx *gc = weir_group_ctx(g);
    int cause = weir_ctx_cause(gc);

    if (!weir_ctx_done(gc))
        FAIL(st, "group ctx live after a failure");
    if (sc == S_GROUP) {
        if (rc != code || cause != code)
            FAIL(st, "group wait %d, cause %d, want %d for both", rc, cause,
                 code);
        if (by_fail_call && strcmp(weir_group_errmsg(g), msg) != 0)
            FAIL(st, "errmsg '%s', want '%s'", weir_group_errmsg(g), msg);
        for (int i = 0; i < ntask; i++)
            if (k[i].rc != (k[i].fail_code ? code : WEIR_ECANCELED))
                FAIL(st, "task %d returned %ld", i, k[i].rc);
    } else {
        if (rc != code && rc != WEIR_ECANCELED)
            FAIL(st, "group wait %d, want %d or ECANCELED", rc, code);
        if (cause != code && cause != c0)
            FAIL(st, "group cause %d, want %d or %d", cause, code, c0);
        if (cause == code && rc != code)
            FAIL(st, "group failed first with %d but wait returned %d", code,
                 rc);
        for (int i = 0; i < ntask; i++)
            if (k[i].rc != WEIR_ECANCELED && k[i].rc != k[i].fail_code)
                FAIL(st, "task %d returned %ld", i, k[i].rc);
    }
    st->woken += ntask;
    weir_group_destroy(g);
    const char *bad = objects_check_free(&o);
    if (bad)
        FAIL(st, "%s", bad);
    for (int i = depth - 1; i >= 0; i--)
        weir_ctx_destroy(chain[i]);
}

/* ---- main ---------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: ctx_stress [--seconds S] [--seed N] [--config SUBSTRING]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    double seconds = 2;
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = strtod(argv[++i], NULL);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--config") && i + 1 < argc)
            only = argv[++i];
        else
            usage();
    }
    if (!(seconds > 0))
        usage();
    printf("ctx_stress: seed %" PRIu64 ", %.1f s, %d threads\n", seed, seconds,
           NTHREADS);
    if (weir_wg_create(&g_finished) != 0)
        die("weir_wg_create failed");

    pthread_t wd;
    if (pthread_create(&wd, NULL, watchdog_main, NULL) != 0)
        die("cannot start the watchdog");
    pthread_detach(wd);

    int nrun = 0;
    for (int sc = 0; sc < S_N; sc++)
        nrun += !only || strstr(scenario_name[sc], only);
    if (nrun == 0)
        usage();
    uint64_t budget = (uint64_t)(seconds * 1e9) / (uint64_t)nrun;

    int passed = 0, failed = 0;
    for (int sc = 0; sc < S_N; sc++) {
        if (only && !strstr(scenario_name[sc], only))
            continue;
        struct stats st = {0};
        uint64_t rng = seed ^ ((uint64_t)sc << 56);
        atomic_store(&wd_scenario, sc);
        uint64_t t0 = weir_now_ns();
        /* At least a few iterations, however small the budget. */
        while (st.iterations < 3 || weir_now_ns() - t0 < budget) {
            atomic_store(&wd_iteration, st.iterations);
            atomic_store(&wd_progress, weir_now_ns());
            if (sc >= S_GROUP)
                group_iteration((enum scenario)sc, &rng, &st);
            else
                tree_iteration((enum scenario)sc, &rng, &st);
            st.iterations++;
        }
        atomic_store(&wd_progress, 0);
        printf("%-14s %5ld iterations %7ld woken %5ld by deadline %5.0f ms  "
               "%s%s\n",
               scenario_name[sc], st.iterations, st.woken, st.deadline_hits,
               (double)(weir_now_ns() - t0) / 1e6,
               st.failures ? "FAIL: " : "ok", st.first_failure);
        fflush(stdout);
        if (st.failures)
            failed++;
        else
            passed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    /* g_finished is not destroyed: a weir_go thread may still be on its way
     * out of weir_wg_done(). */
    return failed ? 1 : 0;
}
