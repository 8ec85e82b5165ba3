/*
 * internal.h — shared by libweir's own files; not installed.
 * Internal non-static symbols are named weir__*.
 */
#ifndef WEIR_INTERNAL_H
#define WEIR_INTERNAL_H

#include "weir.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>

#define WEIR__CACHELINE 64

#if defined(__x86_64__) || defined(__i386__)
#define weir__cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define weir__cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define weir__cpu_relax() ((void)0)
#endif

#define WEIR__LIKELY(x) __builtin_expect(!!(x), 1)
#define WEIR__UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Forward an error: `WEIR__TRY(f(x));` returns f's negative result. */
#define WEIR__TRY(expr)                                                      \
    do {                                                                     \
        int weir__rc_ = (expr);                                              \
        if (weir__rc_ < 0) return weir__rc_;                                 \
    } while (0)

/* ---- futex ---------------------------------------------------------------- */

/* Sleep while *word == expected, at most timeout_ns (UINT64_MAX: forever).
 * Returns on wake, value change, timeout or signal: callers re-check. */
void weir__futex_wait(_Atomic uint32_t *word, uint32_t expected,
                      uint64_t timeout_ns);
/* Wake up to n sleepers on word. */
void weir__futex_wake(_Atomic uint32_t *word, int n);

/*
 * Eventcount: how a thread sleeps until a condition it polls becomes true,
 * without lost wake-ups and without a syscall on the notify path when
 * nobody sleeps.
 *
 *   waiter:   key = weir__ec_prepare(ec); if (!cond()) weir__ec_wait(ec, key);
 *   notifier: make cond() true; weir__ec_notify(ec);
 *
 * The word holds an epoch (bits 1..31) and a "someone may sleep" bit (bit 0).
 * prepare sets the bit with a seq_cst RMW; notify issues a seq_cst fence
 * after the caller's publication and then reads the word. Either the
 * notifier sees the bit (and bumps the epoch, so the futex wait fails or is
 * woken), or the waiter's re-check of cond() sees the publication.
 */
typedef struct weir__ec {
    _Atomic uint32_t word;
} weir__ec;

static inline uint32_t weir__ec_prepare(weir__ec *ec)
{
    return atomic_fetch_or_explicit(&ec->word, 1u, memory_order_seq_cst) | 1u;
}

void weir__ec_wake_slow(weir__ec *ec, uint32_t seen);

static inline void weir__ec_notify(weir__ec *ec)
{
    /* Orders the caller's publication (an index store) before the load of
     * the sleep bit: the StoreLoad half of the Dekker handshake. */
    atomic_thread_fence(memory_order_seq_cst);
    uint32_t w = atomic_load_explicit(&ec->word, memory_order_relaxed);
    if (WEIR__UNLIKELY(w & 1u)) weir__ec_wake_slow(ec, w);
}

/* Bump the epoch and wake everyone, whether or not the bit is set. */
void weir__ec_notify_all(weir__ec *ec);

static inline void weir__ec_wait(weir__ec *ec, uint32_t key, uint64_t timeout_ns)
{
    weir__futex_wait(&ec->word, key, timeout_ns);
}

/* How many times a waiter polls before it parks: 0 on a single CPU. */
int weir__spin_limit(void);
/* Number of online CPUs (cached). */
int weir__ncpus(void);

/* Block until c holds fewer than n items (every receive wakes it to look).
 * @return 0, WEIR_ECLOSED, or the context's error. */
int weir__chan_wait_below(weir_chan *c, size_t n, weir_ctx *ctx);

/* Append row `row` of src to dst with just the columns cols[0..n) (dst's
 * schema has n columns): one reservation, a copy per field.
 * @return 0, WEIR_EINVAL or WEIR_ENOMEM. */
int weir__batch_copy_cols(weir_batch *dst, const weir_batch *src, uint32_t row,
                          const uint32_t *cols, uint32_t n);

/* ---- contexts ---------------------------------------------------------------- */

/* A thread parked on an eventcount registers it with the context it waits
 * under, so a cancel can wake it. Lives on the waiter's stack. */
typedef struct weir__waiter {
    weir__ec *ec;
    struct weir__waiter *prev, *next;
} weir__waiter;

void weir__ctx_add_waiter(weir_ctx *ctx, weir__waiter *w);
void weir__ctx_remove_waiter(weir_ctx *ctx, weir__waiter *w);

/* Park on ec until woken, ctx is done, or the deadline passes; the caller
 * re-checks its condition. `key` comes from weir__ec_prepare. */
void weir__park(weir__ec *ec, uint32_t key, weir_ctx *ctx, uint64_t deadline_ns);

/* ---- misc ------------------------------------------------------------------ */

/* vsnprintf into a fixed buffer, truncating safely. */
void weir__vfmt(char *buf, size_t size, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#endif /* WEIR_INTERNAL_H */
