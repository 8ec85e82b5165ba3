/*
 * chan_stress.c — exactly-once delivery through weir channels under load.
 *
 *   chan_stress [--seconds S] [--seed N] [--config SUBSTR] [--skip SUBSTR]
 *
 * --config runs only the configurations whose name contains SUBSTR,
 * --skip (repeatable) leaves those out; names are as printed, e.g.
 * "cancel mpmc 4x4 cap=2 mixed".
 *
 * For each configuration (SPSC or MPMC, P producers x C consumers,
 * capacity 1 / 2 / 1024, single or mixed single+batched operations):
 *
 *   phase "flow":   producers send items encoding (producer, sequence) until
 *                   the time share is spent, then the channel is closed and
 *                   the consumers drain it. Every item must arrive exactly
 *                   once; with one consumer, each producer's items arrive in
 *                   order.
 *   phase "cancel": the same, but at a random moment the run is cut short by
 *                   cancelling the context tree, closing the channel, both,
 *                   or a deadline. Producers count what they sent, consumers
 *                   what they received, and the main thread drains the rest
 *                   with try_recv: sent == received + drained, exactly, with
 *                   no duplicates and no foreign items.
 *
 * A watchdog turns a hang into a failure naming the configuration. The time
 * budget (--seconds) is divided between the configurations. The last line
 * is "N passed, M failed"; the exit status is 1 if anything failed.
 * No timing is asserted. Shared counters are atomics, so the program is
 * clean under ThreadSanitizer unless the channel itself races.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "weir.h"

#define MAXP 8
#define MAXC 8
#define MAXBATCH 32
#define SEQ_BITS 40
#define SEQ_MASK ((UINT64_C(1) << SEQ_BITS) - 1)
/* Items per producer at most: bounds the bitmaps (512 KiB each). */
#define MAXSEQ (UINT64_C(1) << 22)

#define ENC(p, s) ((void *)(uintptr_t)(((uint64_t)(p) << SEQ_BITS) | (s)))

enum mode { MODE_SINGLE, MODE_MIXED };
enum action { ACT_CANCEL, ACT_CLOSE, ACT_CANCEL_CLOSE, ACT_DEADLINE, ACT_N };
static const char *const action_name[ACT_N] = {"cancel", "close",
                                               "cancel+close", "deadline"};

struct cfg {
    unsigned flags;
    int np, nc;
    size_t cap;
    enum mode mode;
};

static const struct cfg configs[] = {
    {WEIR_CHAN_SPSC, 1, 1, 1, MODE_SINGLE},
    {WEIR_CHAN_SPSC, 1, 1, 2, MODE_SINGLE},
    {WEIR_CHAN_SPSC, 1, 1, 1024, MODE_SINGLE},
    {WEIR_CHAN_SPSC, 1, 1, 1, MODE_MIXED},
    {WEIR_CHAN_SPSC, 1, 1, 2, MODE_MIXED},
    {WEIR_CHAN_SPSC, 1, 1, 1024, MODE_MIXED},
    {WEIR_CHAN_MPMC, 1, 4, 1, MODE_MIXED},
    {WEIR_CHAN_MPMC, 1, 4, 2, MODE_MIXED},
    {WEIR_CHAN_MPMC, 1, 4, 1024, MODE_MIXED},
    {WEIR_CHAN_MPMC, 4, 1, 1, MODE_MIXED},
    {WEIR_CHAN_MPMC, 4, 1, 2, MODE_MIXED},
    {WEIR_CHAN_MPMC, 4, 1, 1024, MODE_MIXED},
    {WEIR_CHAN_MPMC, 4, 4, 1, MODE_SINGLE},
    {WEIR_CHAN_MPMC, 4, 4, 2, MODE_MIXED},
    {WEIR_CHAN_MPMC, 4, 4, 1024, MODE_MIXED},
    {WEIR_CHAN_MPMC, 8, 8, 1, MODE_MIXED},
    {WEIR_CHAN_MPMC, 8, 8, 2, MODE_MIXED},
    {WEIR_CHAN_MPMC, 8, 8, 1024, MODE_MIXED},
};
#define NCONFIGS (sizeof configs / sizeof configs[0])

/* ---- small helpers ------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void cfg_name(const struct cfg *c, const char *phase, char *buf,
                     size_t size)
{
    snprintf(buf, size, "%s %s %dx%d cap=%zu %s", phase,
             (c->flags & WEIR_CHAN_MPMC) ? "mpmc" : "spsc", c->np, c->nc,
             c->cap, c->mode == MODE_SINGLE ? "single" : "mixed");
}

/* ---- the watchdog -------------------------------------------------------- */

static char wd_name[128];           /* written before wd_deadline is set */
static _Atomic uint64_t wd_deadline; /* 0: idle */
static _Atomic(weir_chan *) wd_chan;

static void *watchdog_main(void *arg)
{
    (void)arg;
    for (;;) {
        sleep_ns(100 * 1000000u);
        uint64_t d = atomic_load(&wd_deadline);
        if (d != 0 && weir_now_ns() > d) {
            weir_chan *c = atomic_load(&wd_chan);
            fprintf(stderr,
                    "chan_stress: HANG: config '%s' did not finish "
                    "(channel len %zu, closed %d)\n",
                    wd_name, c ? weir_chan_len(c) : 0,
                    c ? (int)weir_chan_closed(c) : -1);
            fflush(stderr);
            _exit(1);
        }
    }
    return NULL;
}

static void watchdog_arm(const char *name, uint64_t budget_ns, weir_chan *c)
{
    atomic_store(&wd_deadline, 0);
    snprintf(wd_name, sizeof wd_name, "%s", name);
    atomic_store(&wd_chan, c);
    atomic_store(&wd_deadline, weir_now_ns() + budget_ns + UINT64_C(30000000000));
}

static void watchdog_disarm(void)
{
    atomic_store(&wd_deadline, 0);
    atomic_store(&wd_chan, NULL);
}

/* ---- one run --------------------------------------------------------------- */

struct run {
    const struct cfg *cfg;
    weir_chan *c;
    bool cancel_phase;
    atomic_bool stop;                /* flow phase: producers stop */
    _Atomic uint64_t *seen[MAXP];    /* bit s: item (p, s) received */
    atomic_ulong dups, foreign, disorder;
};

struct worker {
    struct run *run;
    int id;
    weir_ctx *ctx;
    weir_ctx *chain[2]; /* cancel phase: this worker's private descendants */
    uint64_t rng;
    uint64_t count;     /* items sent / received */
    long end_rc;        /* why the loop ended; 0: stopped normally */
    uint64_t last[MAXP]; /* single consumer: last sequence per producer */
    pthread_t th;
};

/* Record received items: exactly once, from a real producer, and in order
 * per producer when there is a single consumer. */
static void record(struct run *r, uint64_t *last, void *const *items, long n)
{
    for (long i = 0; i < n; i++) {
        uint64_t v = (uint64_t)(uintptr_t)items[i];
        uint64_t p = v >> SEQ_BITS, s = v & SEQ_MASK;
        if (p >= (uint64_t)r->cfg->np || s == 0 || s > MAXSEQ) {
            atomic_fetch_add_explicit(&r->foreign, 1, memory_order_relaxed);
            continue;
        }
        uint64_t bit = UINT64_C(1) << (s % 64);
        uint64_t old = atomic_fetch_or_explicit(&r->seen[p][s / 64], bit,
                                                memory_order_relaxed);
        if (old & bit)
            atomic_fetch_add_explicit(&r->dups, 1, memory_order_relaxed);
        if (last) {
            if (s != last[p] + 1)
                atomic_fetch_add_explicit(&r->disorder, 1, memory_order_relaxed);
            last[p] = s;
        }
    }
}

/* A try_ call found the channel full/empty: give up if the context is done. */
static bool try_again(struct worker *w)
{
    if (w->ctx && weir_ctx_done(w->ctx)) {
        w->end_rc = weir_ctx_err(w->ctx);
        return false;
    }
    sched_yield();
    return true;
}

static void *producer_main(void *arg)
{
    struct worker *w = arg;
    struct run *r = w->run;
    void *items[MAXBATCH];
    uint64_t next = 1;
    w->end_rc = 0;
    while (next <= MAXSEQ) {
        if (!r->cancel_phase &&
            atomic_load_explicit(&r->stop, memory_order_relaxed))
            break;
        uint64_t x = splitmix(&w->rng);
        int op = r->cfg->mode == MODE_SINGLE ? 0 : (int)(x % 4);
        size_t n = (op == 1 || op == 3) ? 1 + (size_t)((x >> 8) % MAXBATCH) : 1;
        if (next + n - 1 > MAXSEQ)
            n = (size_t)(MAXSEQ - next + 1);
        for (size_t i = 0; i < n; i++)
            items[i] = ENC(w->id, next + i);
        long got;
        switch (op) {
        case 0:
            got = weir_chan_send(r->c, items[0], w->ctx);
            got = got == 0 ? 1 : got;
            break;
        case 1:
            got = weir_chan_send_many(r->c, items, n, w->ctx);
            break;
        case 2:
            got = weir_chan_try_send(r->c, items[0]);
            got = got == 0 ? 1 : got;
            break;
        default:
            got = weir_chan_try_send_many(r->c, items, n);
            break;
        }
        if (got > 0) {
            if ((size_t)got > n) { /* more than asked: a channel bug */
                w->end_rc = 1000 + got;
                break;
            }
            next += (uint64_t)got;
            continue;
        }
        if (got == WEIR_EAGAIN && (op == 2 || op == 3)) {
            if (try_again(w))
                continue;
            break;
        }
        w->end_rc = got;
        break;
    }
    w->count = next - 1;
    return NULL;
}

static void *consumer_main(void *arg)
{
    struct worker *w = arg;
    struct run *r = w->run;
    void *items[MAXBATCH];
    uint64_t *last = r->cfg->nc == 1 ? w->last : NULL;
    w->count = 0;
    for (;;) {
        uint64_t x = splitmix(&w->rng);
        int op = r->cfg->mode == MODE_SINGLE ? 0 : (int)(x % 4);
        size_t max = (op == 1 || op == 3) ? 1 + (size_t)((x >> 8) % MAXBATCH) : 1;
        long got;
        switch (op) {
        case 0:
            got = weir_chan_recv(r->c, &items[0], w->ctx);
            got = got == 0 ? 1 : got;
            break;
        case 1:
            got = weir_chan_recv_many(r->c, items, max, w->ctx);
            break;
        case 2:
            got = weir_chan_try_recv(r->c, &items[0]);
            got = got == 0 ? 1 : got;
            break;
        default:
            got = weir_chan_try_recv_many(r->c, items, max);
            break;
        }
        if (got > 0) {
            if ((size_t)got > max) {
                w->end_rc = 1000 + got;
                break;
            }
            record(r, last, items, got);
            w->count += (uint64_t)got;
            /* Cancel phase: a slower consumer lets items pile up, so the
             * cut finds a full channel and the drain has work. */
            if (r->cancel_phase && x % 8 == 0)
                sched_yield();
            continue;
        }
        if (got == WEIR_EAGAIN && (op == 2 || op == 3)) {
            if (try_again(w))
                continue;
            break;
        }
        w->end_rc = got;
        break;
    }
    return NULL;
}

/* Drain what is left with the non-blocking calls. */
static uint64_t drain(struct run *r, uint64_t *last, uint64_t *rng, long *end)
{
    void *items[MAXBATCH];
    uint64_t n = 0;
    for (;;) {
        long got;
        if (splitmix(rng) % 2) {
            got = weir_chan_try_recv(r->c, &items[0]);
            got = got == 0 ? 1 : got;
        } else {
            got = weir_chan_try_recv_many(r->c, items, MAXBATCH);
        }
        if (got <= 0) {
            *end = got;
            return n;
        }
        record(r, last, items, got);
        n += (uint64_t)got;
    }
}

static bool rc_allowed(long rc, enum action act, bool producer)
{
    if (rc == 0)
        return producer; /* a producer may stop at MAXSEQ */
    bool can_close = act == ACT_CLOSE || act == ACT_CANCEL_CLOSE;
    bool can_cancel = act == ACT_CANCEL || act == ACT_CANCEL_CLOSE;
    return (rc == WEIR_ECLOSED && can_close) ||
           (rc == WEIR_ECANCELED && can_cancel) ||
           (rc == WEIR_EDEADLINE && act == ACT_DEADLINE);
}

#define FAIL(...)                                                             \
    do {                                                                      \
        if (!failed)                                                          \
            snprintf(why, sizeof why, __VA_ARGS__);                           \
        failed = true;                                                        \
    } while (0)

/* Run one configuration; return true if it passed. */
static bool run_config(const struct cfg *cfg, bool cancel_phase,
                       uint64_t budget_ns, uint64_t seed, int index)
{
    char name[96], why[256] = "";
    bool failed = false;
    cfg_name(cfg, cancel_phase ? "cancel" : "flow", name, sizeof name);

    static struct run r;
    memset(&r, 0, sizeof r);
    r.cfg = cfg;
    r.cancel_phase = cancel_phase;
    atomic_init(&r.stop, false);
    atomic_init(&r.dups, 0);
    atomic_init(&r.foreign, 0);
    atomic_init(&r.disorder, 0);
    size_t words = (size_t)(MAXSEQ / 64 + 1);
    for (int p = 0; p < cfg->np; p++) {
        r.seen[p] = calloc(words, sizeof *r.seen[p]);
        if (!r.seen[p]) {
            fprintf(stderr, "chan_stress: out of memory\n");
            exit(1);
        }
    }
    int rc = weir_chan_create(&r.c, cfg->cap, cfg->flags);
    if (rc != 0) {
        printf("%-36s FAIL: weir_chan_create: %s\n", name, weir_strerror(rc));
        return false;
    }
    watchdog_arm(name, budget_ns, r.c);

    uint64_t rng = seed ^ ((uint64_t)index << 48) ^ (cancel_phase ? 0x5a5a : 0);
    enum action act = (enum action)(splitmix(&rng) % ACT_N);
    /* The moment of the cut: often very early, otherwise anywhere. */
    uint64_t delay = splitmix(&rng) % 4 == 0 ? splitmix(&rng) % 2000000u
                                             : splitmix(&rng) % budget_ns;
    int cause = -1000 - (int)(splitmix(&rng) % 1000);

    weir_ctx *root = NULL;
    if (cancel_phase && act == ACT_DEADLINE)
        rc = weir_ctx_create_timeout(&root, NULL, delay);
    else
        rc = weir_ctx_create(&root, NULL);
    if (rc != 0) {
        printf("%-36s FAIL: context: %s\n", name, weir_strerror(rc));
        return false;
    }

    struct worker prod[MAXP], cons[MAXC];
    int nw = cfg->np + cfg->nc;
    for (int i = 0; i < nw; i++) {
        bool is_p = i < cfg->np;
        struct worker *w = is_p ? &prod[i] : &cons[i - cfg->np];
        memset(w, 0, sizeof *w);
        w->run = &r;
        w->id = is_p ? i : i - cfg->np;
        w->rng = seed ^ ((uint64_t)index << 40) ^ ((uint64_t)i << 8) ^
                 (cancel_phase ? 1 : 0);
        splitmix(&w->rng);
        if (cancel_phase) {
            /* Each worker waits on its own descendant of root, 0-2 deep. */
            int depth = (int)(splitmix(&w->rng) % 3);
            weir_ctx *parent = root;
            for (int d = 0; d < depth; d++) {
                if (weir_ctx_create(&w->chain[d], parent) != 0) {
                    fprintf(stderr, "chan_stress: weir_ctx_create failed\n");
                    exit(1);
                }
                parent = w->chain[d];
            }
            w->ctx = parent;
        } else {
            w->ctx = (i % 2) ? root : NULL; /* a live context, or none */
        }
    }
    uint64_t t0 = weir_now_ns();
    for (int i = 0; i < cfg->nc; i++)
        if (pthread_create(&cons[i].th, NULL, consumer_main, &cons[i]) != 0) {
            fprintf(stderr, "chan_stress: pthread_create failed\n");
            exit(1);
        }
    for (int i = 0; i < cfg->np; i++)
        if (pthread_create(&prod[i].th, NULL, producer_main, &prod[i]) != 0) {
            fprintf(stderr, "chan_stress: pthread_create failed\n");
            exit(1);
        }

    if (!cancel_phase) {
        sleep_ns(budget_ns);
        atomic_store(&r.stop, true);
        for (int i = 0; i < cfg->np; i++)
            pthread_join(prod[i].th, NULL);
        weir_chan_close(r.c);
        for (int i = 0; i < cfg->nc; i++)
            pthread_join(cons[i].th, NULL);
    } else {
        switch (act) {
        case ACT_DEADLINE:
            weir_ctx_wait(root, UINT64_MAX);
            break;
        case ACT_CANCEL:
            sleep_ns(delay);
            weir_ctx_cancel(root, cause);
            break;
        case ACT_CLOSE:
            sleep_ns(delay);
            weir_chan_close(r.c);
            break;
        default:
            sleep_ns(delay);
            if (splitmix(&rng) % 2) {
                weir_chan_close(r.c);
                weir_ctx_cancel(root, cause);
            } else {
                weir_ctx_cancel(root, cause);
                weir_chan_close(r.c);
            }
            break;
        }
        for (int i = 0; i < cfg->np; i++)
            pthread_join(prod[i].th, NULL);
        for (int i = 0; i < cfg->nc; i++)
            pthread_join(cons[i].th, NULL);
    }
    uint64_t elapsed = weir_now_ns() - t0;

    /* Single consumer: the drain continues its order check. */
    uint64_t *last = cfg->nc == 1 ? cons[0].last : NULL;
    long drain_end = 0;
    uint64_t drained = drain(&r, last, &rng, &drain_end);

    uint64_t sent = 0, received = 0;
    for (int i = 0; i < cfg->np; i++) {
        sent += prod[i].count;
        if (cancel_phase ? !rc_allowed(prod[i].end_rc, act, true)
                         : prod[i].end_rc != 0)
            FAIL("producer %d ended with %ld (%s)", i, prod[i].end_rc,
                 weir_errname((int)prod[i].end_rc));
    }
    for (int i = 0; i < cfg->nc; i++) {
        received += cons[i].count;
        if (cancel_phase ? !rc_allowed(cons[i].end_rc, act, false)
                         : cons[i].end_rc != WEIR_ECLOSED)
            FAIL("consumer %d ended with %ld (%s)", i, cons[i].end_rc,
                 weir_errname((int)cons[i].end_rc));
    }
    if (!cancel_phase && drained != 0)
        FAIL("%" PRIu64 " items left after the consumers saw ECLOSED", drained);
    bool closed = weir_chan_closed(r.c);
    if (drain_end != (closed ? WEIR_ECLOSED : WEIR_EAGAIN))
        FAIL("drain ended with %ld on a %s channel", drain_end,
             closed ? "closed" : "open");
    if (weir_chan_len(r.c) != 0)
        FAIL("len %zu after the drain", weir_chan_len(r.c));
    if (sent != received + drained)
        FAIL("sent %" PRIu64 " != received %" PRIu64 " + drained %" PRIu64,
             sent, received, drained);
    if (atomic_load(&r.dups))
        FAIL("%lu duplicate items", atomic_load(&r.dups));
    if (atomic_load(&r.foreign))
        FAIL("%lu items that no producer sent", atomic_load(&r.foreign));
    if (atomic_load(&r.disorder))
        FAIL("%lu items out of order (single consumer)",
             atomic_load(&r.disorder));
    /* Every item each producer sent — sequences 1..count — was seen. */
    for (int p = 0; p < cfg->np && !failed; p++) {
        uint64_t n = prod[p].count, missing = 0, extra = 0;
        for (size_t wi = 0; wi < words; wi++) {
            /* The bits of this word that must be set: sequences 1..n. */
            uint64_t lo = (uint64_t)wi * 64, want = 0;
            if (n >= lo) {
                uint64_t hi = n - lo; /* highest wanted bit in this word */
                want = hi >= 63 ? ~UINT64_C(0) : (UINT64_C(2) << hi) - 1;
            }
            if (wi == 0)
                want &= ~UINT64_C(1); /* sequence 0 is never sent */
            uint64_t got = atomic_load_explicit(&r.seen[p][wi],
                                                memory_order_relaxed);
            missing += (uint64_t)__builtin_popcountll(want & ~got);
            extra += (uint64_t)__builtin_popcountll(got & ~want);
        }
        if (missing || extra)
            FAIL("producer %d: %" PRIu64 " items lost, %" PRIu64
                 " beyond what it sent", p, missing, extra);
    }

    watchdog_disarm();
    for (int i = 0; i < nw; i++) {
        struct worker *w = i < cfg->np ? &prod[i] : &cons[i - cfg->np];
        weir_ctx_destroy(w->chain[1]);
        weir_ctx_destroy(w->chain[0]);
    }
    weir_ctx_destroy(root);
    weir_chan_destroy(r.c);
    for (int p = 0; p < cfg->np; p++)
        free(r.seen[p]);

    if (cancel_phase)
        printf("%-36s %-12s %10" PRIu64 " sent %10" PRIu64 " recv %6" PRIu64
               " drained %5.0f ms  %s%s\n",
               name, action_name[act], sent, received, drained,
               (double)elapsed / 1e6, failed ? "FAIL: " : "ok", why);
    else
        printf("%-36s %-12s %10" PRIu64 " items %5.0f ms  %s%s\n", name, "",
               received, (double)elapsed / 1e6, failed ? "FAIL: " : "ok", why);
    fflush(stdout);
    return !failed;
}

static void usage(void)
{
    fprintf(stderr, "usage: chan_stress [--seconds S] [--seed N] "
                    "[--config SUBSTR] [--skip SUBSTR]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    double seconds = 2;
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    const char *only = NULL, *skip[8];
    int nskip = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = strtod(argv[++i], NULL);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--config") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--skip") && i + 1 < argc && nskip < 8)
            skip[nskip++] = argv[++i];
        else
            usage();
    }
    if (!(seconds > 0))
        usage();
    printf("chan_stress: seed %" PRIu64 ", %.1f s\n", seed, seconds);

    pthread_t wd;
    if (pthread_create(&wd, NULL, watchdog_main, NULL) != 0) {
        fprintf(stderr, "chan_stress: cannot start the watchdog\n");
        return 1;
    }
    pthread_detach(wd);

    /* Which runs: every config in both phases, filtered by --config. */
    int nrun = 0;
    bool pick[2][NCONFIGS];
    for (int ph = 0; ph < 2; ph++)
        for (size_t i = 0; i < NCONFIGS; i++) {
            char name[96];
            cfg_name(&configs[i], ph ? "cancel" : "flow", name, sizeof name);
            pick[ph][i] = !only || strstr(name, only);
            for (int k = 0; k < nskip; k++)
                if (strstr(name, skip[k]))
                    pick[ph][i] = false;
            nrun += pick[ph][i];
        }
    if (nrun == 0) {
        fprintf(stderr, "chan_stress: no configuration selected\n");
        return 2;
    }
    uint64_t budget = (uint64_t)(seconds * 1e9) / (uint64_t)nrun;
    if (budget < 1000000)
        budget = 1000000;

    int passed = 0, failed = 0, index = 0;
    for (int ph = 0; ph < 2; ph++)
        for (size_t i = 0; i < NCONFIGS; i++, index++)
            if (pick[ph][i]) {
                if (run_config(&configs[i], ph == 1, budget, seed, index))
                    passed++;
                else
                    failed++;
            }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
