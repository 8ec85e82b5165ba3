/*
 * chan.c — bounded lock-free channels with Go's close semantics.
 *
 * SPSC: a Lamport ring. The producer owns `tail`, the consumer owns `head`;
 * each keeps a cached copy of the other's index so that the shared line is
 * read only when the cached view says full/empty. Slots are published by a
 * release store of the owner's index.
 *
 * MPMC: Dmitry Vyukov's bounded queue. Each cell carries a sequence number:
 * cell i is free for the producer of position p when seq == p, and full for
 * the consumer of position p when seq == p + 1. A batched operation checks a
 * run of consecutive cells and claims them all with one CAS on the shared
 * position; a cell's seq cannot change between the check and the CAS,
 * because only the winner of position p may touch cell p next.
 *
 * Blocking: poll, spin briefly (multi-CPU only), then park on an eventcount
 * (not_empty for receivers, not_full for senders). Every successful
 * transfer notifies the other side's eventcount.
 *
 * The notify must not miss a thread that is about to park: the notifier
 * stores the index and then loads the sleep bit, the parker sets the bit
 * and then loads the index (a Dekker handshake), so one side needs a
 * StoreLoad barrier. A fence on every transfer stalls on the cross-core
 * miss of the index line, which costs 2–4× on single-item transfers. So a
 * channel starts "asymmetric": transfers use a compiler barrier only, and
 * a thread about to park pays instead, with membarrier(), which runs a
 * full barrier on every CPU running this process. Parking is the slow path
 * — until a channel parks often (oversubscribed pipelines), where an IPI
 * per park costs more than a fence per transfer: after ASYM_PARKS parks
 * the channel switches, for good, to a fence per transfer.
 */
#include "internal.h"

#include <linux/membarrier.h>
#include <stdalign.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Parks after which a channel gives up the asymmetric handshake. */
#define ASYM_PARKS 256

/* The handshake's modes. ON: transfers skip the fence, parkers membarrier.
 * SWITCHING: transfers fence, parkers still membarrier (a transfer that
 * read ON may still be in flight). OFF: transfers fence, parkers do not. */
enum { ASYM_OFF = 0, ASYM_ON = 1, ASYM_SWITCHING = 2 };

typedef struct weir__cell {
    _Atomic size_t seq;
    void *item;
} weir__cell;

struct weir_chan {
    /* Producer side. */
    alignas(WEIR__CACHELINE) _Atomic size_t tail;
    size_t head_cache; /* SPSC: producer's last view of head */
    /* Consumer side. */
    alignas(WEIR__CACHELINE) _Atomic size_t head;
    size_t tail_cache; /* SPSC: consumer's last view of tail */
    /* Waiting; each eventcount on its own line, since the two sides
     * notify different ones. */
    alignas(WEIR__CACHELINE) weir__ec not_empty;
    alignas(WEIR__CACHELINE) weir__ec not_full;
    /* Read-mostly. */
    alignas(WEIR__CACHELINE) _Atomic int closed;
    _Atomic int asym;     /* ASYM_ON / ASYM_SWITCHING / ASYM_OFF */
    _Atomic unsigned parks;
    size_t mask;
    size_t cap;         /* logical capacity (MPMC may have more cells) */
    unsigned flags;
    void **slots;       /* SPSC */
    weir__cell *cells;  /* MPMC */
};

/* Can this process use membarrier(PRIVATE_EXPEDITED)? Asked once. */
static int membarrier_ok(void)
{
    static _Atomic int state; /* 0 unknown, 1 yes, -1 no */
    int st = atomic_load_explicit(&state, memory_order_acquire);
    if (st == 0) {
        long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
        st = cmds >= 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
                     syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0
                 ? 1
                 : -1;
        atomic_store_explicit(&state, st, memory_order_release);
    }
    return st > 0;
}

int weir_chan_create(weir_chan **out, size_t capacity, unsigned flags)
{
    *out = NULL;
    if (capacity == 0 || capacity > ((size_t)1 << 30) ||
        (flags & ~(unsigned)WEIR_CHAN_MPMC))
        return WEIR_EINVAL;
    size_t cap = 1;
    while (cap < capacity) cap <<= 1;
    /* Vyukov's cells tell "full at p" from "free for p + 1" by sequence
     * numbers one lap apart; with one cell those coincide. So an MPMC
     * channel of capacity 1 has two cells and bounds its count instead. */
    size_t cells = (flags & WEIR_CHAN_MPMC) && cap < 2 ? 2 : cap;

    weir_chan *c = aligned_alloc(WEIR__CACHELINE, sizeof *c);
    if (!c) return WEIR_ENOMEM;
    *c = (weir_chan){.mask = cells - 1, .cap = cap, .flags = flags};
    atomic_init(&c->asym, membarrier_ok() && weir__ncpus() > 1 ? ASYM_ON : ASYM_OFF);
    if (flags & WEIR_CHAN_MPMC) {
        c->cells = calloc(cells, sizeof *c->cells);
        if (!c->cells) goto oom;
        for (size_t i = 0; i < cells; i++)
            atomic_init(&c->cells[i].seq, i);
    } else {
        c->slots = calloc(cap, sizeof *c->slots);
        if (!c->slots) goto oom;
    }
    *out = c;
    return 0;
oom:
    free(c);
    return WEIR_ENOMEM;
}

void weir_chan_destroy(weir_chan *c)
{
    if (!c) return;
    free(c->slots);
    free(c->cells);
    free(c);
}

size_t weir_chan_cap(const weir_chan *c) { return c->cap; }

bool weir_chan_closed(const weir_chan *c)
{
    return atomic_load_explicit(&c->closed, memory_order_acquire) != 0;
}

size_t weir_chan_len(const weir_chan *c)
{
    size_t t = atomic_load_explicit(&c->tail, memory_order_acquire);
    size_t h = atomic_load_explicit(&c->head, memory_order_acquire);
    size_t n = t - h;
    /* In MPMC, positions are claimed before cells are filled/emptied, and
     * the two loads are not atomic together: clamp the estimate. */
    return n > c->cap ? (t < h ? 0 : c->cap) : n;
}

void weir_chan_close(weir_chan *c)
{
    atomic_store_explicit(&c->closed, 1, memory_order_seq_cst);
    weir__ec_notify_all(&c->not_empty);
    weir__ec_notify_all(&c->not_full);
}

/* ---- SPSC ---------------------------------------------------------------- */

static size_t spsc_push(weir_chan *c, void *const *items, size_t n)
{
    size_t t = atomic_load_explicit(&c->tail, memory_order_relaxed);
    size_t cap = c->mask + 1;
    size_t room = cap - (t - c->head_cache);
    if (room < n) {
        /* Acquire: the consumer's reads of those slots are done. */
        c->head_cache = atomic_load_explicit(&c->head, memory_order_acquire);
        room = cap - (t - c->head_cache);
        if (room == 0) return 0;
    }
    if (n > room) n = room;
    for (size_t i = 0; i < n; i++) c->slots[(t + i) & c->mask] = items[i];
    /* Release: the slot writes above are visible before the new tail. */
    atomic_store_explicit(&c->tail, t + n, memory_order_release);
    return n;
}

static size_t spsc_pop(weir_chan *c, void **items, size_t max)
{
    size_t h = atomic_load_explicit(&c->head, memory_order_relaxed);
    size_t avail = c->tail_cache - h;
    if (avail < max) {
        /* Acquire: pairs with the producer's release of tail. */
        c->tail_cache = atomic_load_explicit(&c->tail, memory_order_acquire);
        avail = c->tail_cache - h;
        if (avail == 0) return 0;
    }
    if (max > avail) max = avail;
    for (size_t i = 0; i < max; i++) items[i] = c->slots[(h + i) & c->mask];
    /* Release: our slot reads are done before the producer may reuse them. */
    atomic_store_explicit(&c->head, h + max, memory_order_release);
    return max;
}

/* ---- MPMC ---------------------------------------------------------------- */

static size_t mpmc_push(weir_chan *c, void *const *items, size_t n)
{
    size_t pos = atomic_load_explicit(&c->tail, memory_order_relaxed);
    for (;;) {
        size_t k = 0;
        while (k < n) {
            weir__cell *cell = &c->cells[(pos + k) & c->mask];
            /* Acquire: the consumer that emptied the cell is done with it. */
            size_t seq = atomic_load_explicit(&cell->seq, memory_order_acquire);
            if (seq != pos + k) break;
            k++;
        }
        if (c->cap <= c->mask) { /* fewer slots than cells: bound by count */
            size_t h = atomic_load_explicit(&c->head, memory_order_acquire);
            if ((intptr_t)(pos - h) < 0) {
                pos = atomic_load_explicit(&c->tail, memory_order_relaxed);
                continue;
            }
            if (pos - h >= c->cap) return 0; /* full */
            if (k > c->cap - (pos - h)) k = c->cap - (pos - h);
        }
        if (k == 0) {
            weir__cell *cell = &c->cells[pos & c->mask];
            size_t seq = atomic_load_explicit(&cell->seq, memory_order_acquire);
            intptr_t dif = (intptr_t)seq - (intptr_t)pos;
            if (dif < 0) return 0; /* full */
            pos = atomic_load_explicit(&c->tail, memory_order_relaxed);
            continue; /* another producer took pos */
        }
        if (atomic_compare_exchange_weak_explicit(&c->tail, &pos, pos + k,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed)) {
            for (size_t i = 0; i < k; i++) {
                weir__cell *cell = &c->cells[(pos + i) & c->mask];
                cell->item = items[i];
                /* Release: the item is visible before the cell reads full. */
                atomic_store_explicit(&cell->seq, pos + i + 1,
                                      memory_order_release);
            }
            return k;
        }
        /* CAS failure reloaded pos. */
    }
}

static size_t mpmc_pop(weir_chan *c, void **items, size_t max)
{
    size_t pos = atomic_load_explicit(&c->head, memory_order_relaxed);
    for (;;) {
        size_t k = 0;
        while (k < max) {
            weir__cell *cell = &c->cells[(pos + k) & c->mask];
            /* Acquire: pairs with the producer's release of seq. */
            size_t seq = atomic_load_explicit(&cell->seq, memory_order_acquire);
            if (seq != pos + k + 1) break;
            k++;
        }
        if (k == 0) {
            weir__cell *cell = &c->cells[pos & c->mask];
            size_t seq = atomic_load_explicit(&cell->seq, memory_order_acquire);
            intptr_t dif = (intptr_t)seq - (intptr_t)(pos + 1);
            if (dif < 0) return 0; /* empty */
            pos = atomic_load_explicit(&c->head, memory_order_relaxed);
            continue;
        }
        if (atomic_compare_exchange_weak_explicit(&c->head, &pos, pos + k,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed)) {
            for (size_t i = 0; i < k; i++) {
                weir__cell *cell = &c->cells[(pos + i) & c->mask];
                items[i] = cell->item;
                /* Release: the read is done before producers reuse the cell,
                 * one lap later. */
                atomic_store_explicit(&cell->seq, pos + i + c->mask + 1,
                                      memory_order_release);
            }
            return k;
        }
    }
}

/* ---- shared paths ---------------------------------------------------------------- */

static inline size_t chan_push(weir_chan *c, void *const *items, size_t n)
{
    return (c->flags & WEIR_CHAN_MPMC) ? mpmc_push(c, items, n)
                                       : spsc_push(c, items, n);
}

static inline size_t chan_pop(weir_chan *c, void **items, size_t max)
{
    return (c->flags & WEIR_CHAN_MPMC) ? mpmc_pop(c, items, max)
                                       : spsc_pop(c, items, max);
}

/* After a transfer: wake the other side if it sleeps (see the top). */
static inline void chan_notify(weir_chan *c, weir__ec *ec)
{
    if (atomic_load_explicit(&c->asym, memory_order_relaxed) == ASYM_ON) {
        /* Only the compiler must not move the index store past the load;
         * the CPU's reordering is undone by the parker's membarrier. */
        atomic_signal_fence(memory_order_seq_cst);
        uint32_t w = atomic_load_explicit(&ec->word, memory_order_relaxed);
        if (WEIR__UNLIKELY(w & 1u)) weir__ec_wake_slow(ec, w);
    } else {
        weir__ec_notify(ec);
    }
}

/* About to park on ec (its sleep bit is set): complete the handshake. In
 * asymmetric mode, membarrier() makes every transfer that raced with us
 * either visible to our re-check or aware of our sleep bit. */
static void chan_before_park(weir_chan *c)
{
    /* Acquire: reading OFF means the switcher's membarrier has returned, so
     * every transfer that skipped the fence is visible by now. */
    int mode = atomic_load_explicit(&c->asym, memory_order_acquire);
    if (mode == ASYM_OFF) return;
    bool switcher = mode == ASYM_ON &&
                    atomic_fetch_add_explicit(&c->parks, 1, memory_order_relaxed) + 1 ==
                        ASYM_PARKS;
    if (switcher) atomic_store_explicit(&c->asym, ASYM_SWITCHING, memory_order_seq_cst);
    syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
    if (switcher) atomic_store_explicit(&c->asym, ASYM_OFF, memory_order_release);
}

long weir_chan_try_send_many(weir_chan *c, void *const *items, size_t n)
{
    if (n == 0) return WEIR_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!items[i]) return WEIR_EINVAL;
    if (atomic_load_explicit(&c->closed, memory_order_acquire))
        return WEIR_ECLOSED;
    size_t k = chan_push(c, items, n);
    if (k == 0) return WEIR_EAGAIN;
    chan_notify(c, &c->not_empty);
    return (long)k;
}

long weir_chan_try_recv_many(weir_chan *c, void **items, size_t max)
{
    if (max == 0) return WEIR_EINVAL;
    size_t k = chan_pop(c, items, max);
    if (k == 0) {
        if (!atomic_load_explicit(&c->closed, memory_order_acquire))
            return WEIR_EAGAIN;
        /* Closed: anything sent before the close is visible now (the close
         * store is ordered after it); take it before reporting CLOSED. */
        k = chan_pop(c, items, max);
        if (k == 0) return WEIR_ECLOSED;
    }
    chan_notify(c, &c->not_full);
    return (long)k;
}

int weir_chan_try_send(weir_chan *c, void *item)
{
    long r = weir_chan_try_send_many(c, &item, 1);
    return r < 0 ? (int)r : 0;
}

int weir_chan_try_recv(weir_chan *c, void **item)
{
    long r = weir_chan_try_recv_many(c, item, 1);
    return r < 0 ? (int)r : 0;
}

/* Would a retry of the operation make progress? A cheap look without
 * claiming anything, used while spinning. */
static inline bool can_send(weir_chan *c)
{
    if (atomic_load_explicit(&c->closed, memory_order_relaxed)) return true;
    size_t t = atomic_load_explicit(&c->tail, memory_order_relaxed);
    size_t h = atomic_load_explicit(&c->head, memory_order_relaxed);
    return t - h < c->cap;
}

static inline bool can_recv(weir_chan *c)
{
    if (atomic_load_explicit(&c->closed, memory_order_relaxed)) return true;
    size_t t = atomic_load_explicit(&c->tail, memory_order_relaxed);
    size_t h = atomic_load_explicit(&c->head, memory_order_relaxed);
    return t != h;
}

int weir__chan_wait_below(weir_chan *c, size_t n, weir_ctx *ctx)
{
    for (;;) {
        if (atomic_load_explicit(&c->closed, memory_order_acquire)) return WEIR_ECLOSED;
        if (weir_chan_len(c) < n) return 0;
        if (ctx && weir_ctx_done(ctx)) return weir_ctx_err(ctx);
        uint32_t key = weir__ec_prepare(&c->not_full);
        chan_before_park(c);
        if (atomic_load_explicit(&c->closed, memory_order_acquire)) return WEIR_ECLOSED;
        if (weir_chan_len(c) < n) return 0;
        weir__park(&c->not_full, key, ctx, UINT64_MAX);
    }
}

long weir_chan_send_many(weir_chan *c, void *const *items, size_t n,
                         weir_ctx *ctx)
{
    int spins = weir__spin_limit();
    for (;;) {
        long r = weir_chan_try_send_many(c, items, n);
        if (r != WEIR_EAGAIN) return r;
        if (ctx && weir_ctx_done(ctx)) return weir_ctx_err(ctx);
        if (spins > 0) {
            for (int i = 0; i < spins && !can_send(c); i++) weir__cpu_relax();
            spins = 0; /* one spin phase per call; after that, park */
            continue;
        }
        uint32_t key = weir__ec_prepare(&c->not_full);
        chan_before_park(c);
        r = weir_chan_try_send_many(c, items, n);
        if (r != WEIR_EAGAIN) return r;
        weir__park(&c->not_full, key, ctx, UINT64_MAX);
    }
}

long weir_chan_recv_many(weir_chan *c, void **items, size_t max, weir_ctx *ctx)
{
    int spins = weir__spin_limit();
    for (;;) {
        long r = weir_chan_try_recv_many(c, items, max);
        if (r != WEIR_EAGAIN) return r;
        if (ctx && weir_ctx_done(ctx)) return weir_ctx_err(ctx);
        if (spins > 0) {
            for (int i = 0; i < spins && !can_recv(c); i++) weir__cpu_relax();
            spins = 0;
            continue;
        }
        uint32_t key = weir__ec_prepare(&c->not_empty);
        chan_before_park(c);
        r = weir_chan_try_recv_many(c, items, max);
        if (r != WEIR_EAGAIN) return r;
        weir__park(&c->not_empty, key, ctx, UINT64_MAX);
    }
}

int weir_chan_send(weir_chan *c, void *item, weir_ctx *ctx)
{
    long r = weir_chan_send_many(c, &item, 1, ctx);
    return r < 0 ? (int)r : 0;
}

int weir_chan_recv(weir_chan *c, void **item, weir_ctx *ctx)
{
    long r = weir_chan_recv_many(c, item, 1, ctx);
    return r < 0 ? (int)r : 0;
}
