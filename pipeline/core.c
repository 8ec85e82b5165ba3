/*
 * core.c — error codes, version, clocks, futexes and the eventcount.
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <linux/futex.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

unsigned weir_version(void) { return WEIR_VERSION_NUMBER; }
const char *weir_version_string(void) { return WEIR_VERSION_STRING; }

const char *weir_strerror(int code)
{
    switch (code) {
    case 0: return "success";
#define WEIR__ERRMSG(name, value, msg) case name: return msg;
    WEIR_ERRORS(WEIR__ERRMSG)
#undef WEIR__ERRMSG
    default: return "unknown error";
    }
}

const char *weir_errname(int code)
{
    switch (code) {
    case 0: return "0";
#define WEIR__ERRNAME(name, value, msg) case name: return #name;
    WEIR_ERRORS(WEIR__ERRNAME)
#undef WEIR__ERRNAME
    default: return "WEIR_E?";
    }
}

uint64_t weir_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int weir_parse_size(const char *s, uint64_t *bytes)
{
    uint64_t v = 0;
    const char *p = s;
    if (*p < '0' || *p > '9') return WEIR_EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10) return WEIR_EINVAL;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    int shift = 0;
    switch (*p) {
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    case 't': case 'T': shift = 40; break;
    case '\0': break;
    default: return WEIR_EINVAL;
    }
    if (shift) {
        p++;
        if (*p == 'i' || *p == 'I') p++;
        if (*p == 'b' || *p == 'B') p++;
    } else if (*p == 'b' || *p == 'B') {
        p++;
    }
    if (*p || v == 0 || v > (UINT64_MAX >> shift)) return WEIR_EINVAL;
    *bytes = v << shift;
    return 0;
}

void weir__futex_wait(_Atomic uint32_t *word, uint32_t expected,
                      uint64_t timeout_ns)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ns != UINT64_MAX) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000u);
        ts.tv_nsec = (long)(timeout_ns % 1000000000u);
        tsp = &ts;
    }
    /* Private futex: the word never lives in shared memory. EAGAIN (value
     * changed), EINTR and ETIMEDOUT all mean "re-check". */
    syscall(SYS_futex, (uint32_t *)(uintptr_t)word, FUTEX_WAIT_PRIVATE, expected, tsp,
            NULL, 0);
}

void weir__futex_wake(_Atomic uint32_t *word, int n)
{
    syscall(SYS_futex, (uint32_t *)(uintptr_t)word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

void weir__ec_wake_slow(weir__ec *ec, uint32_t seen)
{
    /* Clear the sleep bit and advance the epoch in one step. If the CAS
     * fails, another notifier did it (the bit is clear) or the word moved
     * on: either way a wake is already due, but a spurious one is harmless
     * and a missed one is not, so wake anyway. */
    uint32_t next = (seen & ~1u) + 2u;
    atomic_compare_exchange_strong_explicit(&ec->word, &seen, next,
                                            memory_order_seq_cst,
                                            memory_order_relaxed);
    weir__futex_wake(&ec->word, INT_MAX);
}

void weir__ec_notify_all(weir__ec *ec)
{
    atomic_fetch_add_explicit(&ec->word, 2u, memory_order_seq_cst);
    weir__futex_wake(&ec->word, INT_MAX);
}

int weir__ncpus(void)
{
    static _Atomic int cached;
    int n = atomic_load_explicit(&cached, memory_order_relaxed);
    if (n == 0) {
        /* The CPUs this process may run on (taskset, cgroups' cpusets,
         * weir run --threads), as nproc counts them; else those online. */
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) {
            n = CPU_COUNT(&set);
        } else {
            long v = sysconf(_SC_NPROCESSORS_ONLN);
            n = v > 0 ? (int)v : 1;
        }
        atomic_store_explicit(&cached, n, memory_order_relaxed);
    }
    return n;
}

int weir__spin_limit(void)
{
    /* Spinning pays only if the other side runs on another CPU at the same
     * time; on one CPU it just burns the other side's time slice. ~100
     * pause instructions is a few microseconds: about the cost of a futex
     * round trip, so spinning longer than that cannot win. */
    return weir__ncpus() > 1 ? 100 : 0;
}

void weir__vfmt(char *buf, size_t size, const char *fmt, va_list ap)
{
    if (size == 0) return;
    int n = vsnprintf(buf, size, fmt, ap);
    if (n < 0) buf[0] = '\0';
}
