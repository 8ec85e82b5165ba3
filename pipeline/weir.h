/*
 * weir.h — the public API of libweir.
 *
 * weir brings Go's concurrency model to C data pipelines: channels, contexts,
 * goroutines, wait groups and error groups, and on top of them a graph of
 * stages that move batches of bytes or rows through bounded lock-free
 * channels.
 *
 * The header is organised from simple to advanced:
 *   1. errors and version
 *   2. contexts        (weir_ctx)     — cancellation trees and deadlines
 *   3. tasks           (weir_go, weir_wg, weir_group)
 *   4. channels        (weir_chan)    — bounded, lock-free, Go semantics
 *   5. batches         (weir_batch, weir_schema, weir_pool)
 *   6. expressions     (weir_expr, weir_eval)
 *   7. stages          (weir_stage_def, weir_stage)
 *   8. graphs          (weir_graph, weir_node)
 *   9. specs           (weir_spec_compile)
 *
 * Conventions, kept everywhere:
 *   - A function that can fail returns int: 0 (or a count) is success, a
 *     negative WEIR_E* code is an error. weir_strerror() names every code.
 *   - If a call fails, the caller still owns what it passed in — with one
 *     named exception, weir_stage_emit(), which always takes the batch
 *     (a batch is passed on or released, never both, never neither).
 *   - create/destroy for what the library allocates; destroy(NULL) is a
 *     harmless no-op.
 *   - Every call that blocks on another thread takes a weir_ctx and returns
 *     WEIR_ECANCELED (or WEIR_EDEADLINE) promptly when that context is done
 *     — except the joins, weir_group_wait/_destroy (they wait for tasks
 *     that watch the group's context), and weir_graph_check and friends,
 *     which may read input headers (I/O).
 *   - Pointer arguments must not be NULL unless the comment says so. On
 *     failure a create function sets *out to NULL.
 *
 * Thread-safety: channels, contexts, wait groups, error groups and batch
 * pools are safe to use from any number of threads. A batch belongs to one
 * thread at a time (the owner). Graphs are built from one thread.
 */
#ifndef WEIR_H
#define WEIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(WEIR_BUILDING) && defined(__GNUC__)
#define WEIR_API __attribute__((visibility("default")))
#else
#define WEIR_API
#endif

/* ------------------------------------------------------------------------ */
/* 1. Errors and version                                                    */
/* ------------------------------------------------------------------------ */

#define WEIR_VERSION_MAJOR 0
#define WEIR_VERSION_MINOR 1
#define WEIR_VERSION_PATCH 0
#define WEIR_VERSION_STRING "0.1.0"
#define WEIR_VERSION_NUMBER                                                  \
    (WEIR_VERSION_MAJOR * 10000 + WEIR_VERSION_MINOR * 100 + WEIR_VERSION_PATCH)

/* The stage ABI: bumped whenever weir_stage_def or the stage calls change
 * incompatibly. A stage definition records the ABI it was compiled against. */
#define WEIR_ABI_VERSION 1

/* @return the library's version number (WEIR_VERSION_NUMBER it was built with). */
WEIR_API unsigned weir_version(void);
/* @return the library's version as "MAJOR.MINOR.PATCH"; static storage. */
WEIR_API const char *weir_version_string(void);

/* Every error code, once: X(NAME, value, message). */
#define WEIR_ERRORS(X)                                                        \
    X(WEIR_ENOMEM,     -1, "out of memory")                                   \
    X(WEIR_EINVAL,     -2, "invalid argument")                                \
    X(WEIR_ECLOSED,    -3, "channel closed")                                  \
    X(WEIR_EAGAIN,     -4, "would block")                                     \
    X(WEIR_ECANCELED,  -5, "canceled")                                        \
    X(WEIR_EDEADLINE,  -6, "deadline exceeded")                               \
    X(WEIR_EIO,        -7, "input/output error")                              \
    X(WEIR_EDATA,      -8, "malformed data")                                  \
    X(WEIR_ESPEC,      -9, "invalid pipeline spec")                           \
    X(WEIR_ENOTFOUND, -10, "not found")                                       \
    X(WEIR_ETHREAD,   -11, "cannot start thread")                             \
    X(WEIR_ESTAGE,    -12, "stage failed")                                    \
    X(WEIR_EINTERRUPT,-13, "interrupted")                                     \
    X(WEIR_ELIMIT,    -14, "limit exceeded")

enum weir_error {
#define WEIR__ERRENUM(name, value, msg) name = (value),
    WEIR_ERRORS(WEIR__ERRENUM)
#undef WEIR__ERRENUM
};

/* @return a short static message for a WEIR_E* code; "success" for 0 and
 * "unknown error" for anything else. Never NULL. */
WEIR_API const char *weir_strerror(int code);
/* @return the symbolic name ("WEIR_ECLOSED") of a code, "0" for 0, or
 * "WEIR_E?" for a code that is not in the list. */
WEIR_API const char *weir_errname(int code);

/* Nanoseconds on the monotonic clock. Deadlines are expressed in it. */
WEIR_API uint64_t weir_now_ns(void);

/* Parse a size: a whole number of bytes, optionally followed by K, M, G or
 * T (powers of 1024; "KB", "KiB" and lower case accepted), e.g. "512M".
 * @return 0 and *bytes, or WEIR_EINVAL (not a size, zero, or overflow). */
WEIR_API int weir_parse_size(const char *s, uint64_t *bytes);

/* ------------------------------------------------------------------------ */
/* 2. Contexts                                                              */
/* ------------------------------------------------------------------------ */

/*
 * A weir_ctx is Go's context.Context: a node in a tree. Cancelling a context
 * cancels all of its descendants, with the same cause. A context can carry a
 * deadline, after which it cancels itself with WEIR_EDEADLINE. Contexts are
 * safe to share between threads; done/err/cause are a single atomic load.
 *
 * Lifetime: destroy every child before its parent (checked in debug builds).
 */
typedef struct weir_ctx weir_ctx;

/* Create a cancellable context, a child of parent (NULL: a new root).
 * A child of a context that is already done is born done with its cause.
 * @return 0, or WEIR_ENOMEM (nothing is created). */
WEIR_API int weir_ctx_create(weir_ctx **out, weir_ctx *parent);

/* Like weir_ctx_create, with a deadline on the weir_now_ns() clock: when it
 * passes, the context is cancelled with cause WEIR_EDEADLINE. The earlier of
 * this deadline and the parent's applies; a deadline already past gives a
 * context that is done at once.
 * @return 0, WEIR_ENOMEM or WEIR_ETHREAD (the timer thread could not start). */
WEIR_API int weir_ctx_create_deadline(weir_ctx **out, weir_ctx *parent,
                                      uint64_t deadline_ns);

/* Same, with a deadline timeout_ns from now. */
WEIR_API int weir_ctx_create_timeout(weir_ctx **out, weir_ctx *parent,
                                     uint64_t timeout_ns);

/* Cancel ctx and every descendant with cause (a negative WEIR_E* code or
 * any negative application code; 0 and positive values mean
 * WEIR_ECANCELED). The first cancel wins: later calls change nothing.
 * Wakes every thread blocked in a weir call on ctx or a descendant.
 * Never blocks for long (takes short internal locks); not async-signal-safe
 * (see weir_ctx_cancel_from_signal). */
WEIR_API void weir_ctx_cancel(weir_ctx *ctx, int cause);

/* Async-signal-safe cancel: records the cause and wakes a helper thread
 * that performs weir_ctx_cancel(ctx, cause). The helper is started by
 * weir_ctx_signal_prepare(), which must be called before the handler can run.
 * ctx must stay valid until the helper has cancelled it: do not destroy a
 * context a signal may still cancel. One request is pending at a time (a
 * later call replaces an earlier one). @return 0 or WEIR_ETHREAD. */
WEIR_API int weir_ctx_signal_prepare(void);
WEIR_API void weir_ctx_cancel_from_signal(weir_ctx *ctx, int cause);

/* @return true once ctx is cancelled or its deadline has passed. */
WEIR_API bool weir_ctx_done(const weir_ctx *ctx);

/* @return 0 while ctx is live; WEIR_EDEADLINE if it ended by its deadline
 * (or was cancelled with that cause); WEIR_ECANCELED for any other cause.
 * Like Go's Err(). */
WEIR_API int weir_ctx_err(const weir_ctx *ctx);

/* @return 0 while live, else the cause given to the cancel that ended it
 * (inherited from the ancestor that was cancelled). Like context.Cause. */
WEIR_API int weir_ctx_cause(const weir_ctx *ctx);

/* @return the deadline in force (own or inherited), or UINT64_MAX if none. */
WEIR_API uint64_t weir_ctx_deadline(const weir_ctx *ctx);

/* Block until ctx is done, or timeout_ns has passed (UINT64_MAX: no limit).
 * Uses no CPU while waiting.
 * @return weir_ctx_err(ctx) once done, or WEIR_EAGAIN on timeout. */
WEIR_API int weir_ctx_wait(weir_ctx *ctx, uint64_t timeout_ns);

/* Cancel ctx (cause WEIR_ECANCELED), detach it from its parent and free it.
 * ctx must have no children left, and no thread may still be blocked on it
 * or use it (cancelling first does not make that safe). Never destroy
 * weir_group_ctx(g). NULL is a no-op. */
WEIR_API void weir_ctx_destroy(weir_ctx *ctx);

/* ------------------------------------------------------------------------ */
/* 3. Tasks: go, wait groups, error groups                                  */
/* ------------------------------------------------------------------------ */

/* Go's `go fn(arg)`: run fn(arg) on a new detached thread. On 0, fn owns
 * arg. Nothing joins the thread: pair it with a weir_wg to know when it
 * has finished.
 * @return 0, or WEIR_ETHREAD (fn does not run; arg is still the caller's). */
WEIR_API int weir_go(void (*fn)(void *arg), void *arg);

/* Go's sync.WaitGroup. add() before starting the work, done() when it
 * finishes, wait() blocks (without spinning) until the count is zero. */
typedef struct weir_wg weir_wg;
/* @return 0 or WEIR_ENOMEM. */
WEIR_API int weir_wg_create(weir_wg **out);
/* Add delta (may be negative) to the counter; a counter below zero aborts
 * (a programming error, as in Go). As in Go, a positive delta while the
 * count is zero must happen before the wait that should see it. Never
 * blocks; thread-safe. */
WEIR_API void weir_wg_add(weir_wg *wg, int delta);
/* Same as weir_wg_add(wg, -1). Wakes waiters when the count reaches zero. */
WEIR_API void weir_wg_done(weir_wg *wg);
/* Block until the counter is zero, or ctx (may be NULL) is done. Any
 * number of waiters. On 0 the wait group may be destroyed at once (the
 * add() that reached zero has left it). If it returns the context's error,
 * tasks still hold wg: wait again without ctx before destroying it.
 * @return 0, or the context's weir_ctx_err(). */
WEIR_API int weir_wg_wait(weir_wg *wg, weir_ctx *ctx);
/* Free wg; no thread may be inside add, done or wait. NULL is a no-op. */
WEIR_API void weir_wg_destroy(weir_wg *wg);

/*
 * Go's errgroup.Group. The group owns a context derived from parent; the
 * first task that returns non-zero cancels it with that code as the cause,
 * and weir_group_wait() returns that first code.
 */
typedef struct weir_group weir_group;
/* @return 0 or WEIR_ENOMEM. */
WEIR_API int weir_group_create(weir_group **out, weir_ctx *parent);
/* The group's context: pass it to the tasks. Valid until destroy. */
WEIR_API weir_ctx *weir_group_ctx(weir_group *g);
/* Start fn(ctx, arg) on a new thread; its return value is its result (any
 * non-zero value, positive too, is a failure).
 * @return 0, or WEIR_ETHREAD (the task did not start; the group's context is
 * cancelled with WEIR_ETHREAD so running tasks stop, and wait reports it). */
WEIR_API int weir_group_go(weir_group *g, int (*fn)(weir_ctx *ctx, void *arg),
                           void *arg);
/* Record a failure as if a task had returned code (non-zero; a positive
 * code cancels with cause WEIR_ECANCELED), with a message (printf-style;
 * may be NULL). Only the first failure is kept. Thread-safe. @return code. */
WEIR_API int weir_group_fail(weir_group *g, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Block until every task has returned (joins the threads). Takes no
 * context: tasks must watch the group's. Call it from one thread. Unlike
 * Go's errgroup, the group's context is not cancelled when all succeed.
 * @return 0 if all returned 0, else the first non-zero result. */
WEIR_API int weir_group_wait(weir_group *g);
/* The message recorded with the first failure (weir_strerror(code) when it
 * came without one), or "" if nothing failed — valid until destroy. */
WEIR_API const char *weir_group_errmsg(const weir_group *g);
/* Wait for any tasks still running, then free. Does not cancel: if tasks
 * may still be blocked, cancel weir_group_ctx(g) first. NULL is a no-op. */
WEIR_API void weir_group_destroy(weir_group *g);

/* ------------------------------------------------------------------------ */
/* 4. Channels                                                              */
/* ------------------------------------------------------------------------ */

/*
 * A weir_chan is Go's buffered `chan void*`: a bounded ring of pointers
 * (NULL may not be sent). Capacity is rounded up to a power of two.
 *
 *   WEIR_CHAN_SPSC: exactly one sending thread and one receiving thread at a
 *                   time (the graph's 1:1 edges). Wait-free fast path.
 *   WEIR_CHAN_MPMC: any number of senders and receivers (per-slot sequence
 *                   numbers; a batch claims a run of slots with one CAS).
 *
 * Close follows Go: after weir_chan_close(), senders get WEIR_ECLOSED and
 * receivers drain what is buffered and then get WEIR_ECLOSED. Close may be
 * called by either side, more than once.
 *
 * Blocking calls spin briefly when more than one CPU is online and then park
 * on a futex; a parked thread uses no CPU. They return WEIR_ECANCELED /
 * WEIR_EDEADLINE (weir_ctx_err) when ctx is done; ctx may be NULL (never
 * cancelled). The context is looked at only when a call would block: a
 * send into a channel with room succeeds even when ctx is done. On any
 * error nothing was transferred.
 *
 * close, closed, len and cap may be called from any thread, SPSC too.
 * Using an SPSC channel from two senders (or two receivers) at once is not
 * detected. A send that overlaps a close may succeed and leave its item
 * buffered after receivers saw WEIR_ECLOSED: close from the sending side
 * after the last send, or drain before destroy.
 */
typedef struct weir_chan weir_chan;

enum weir_chan_flags {
    WEIR_CHAN_SPSC = 0,
    WEIR_CHAN_MPMC = 1,
};

/* @return 0, WEIR_EINVAL (capacity 0 or above 2^30), or WEIR_ENOMEM. */
WEIR_API int weir_chan_create(weir_chan **out, size_t capacity, unsigned flags);
/* Free the channel. Items still buffered are not freed (drain first if they
 * own memory). Nobody may be using it. NULL is a no-op. */
WEIR_API void weir_chan_destroy(weir_chan *c);

/* Send item (not NULL), blocking while the channel is full.
 * @return 0; WEIR_ECLOSED if closed (before or while waiting);
 *         WEIR_ECANCELED/WEIR_EDEADLINE if ctx is done; WEIR_EINVAL for NULL. */
WEIR_API int weir_chan_send(weir_chan *c, void *item, weir_ctx *ctx);
/* Receive one item, blocking while the channel is empty and open. Items
 * already buffered are returned even when ctx is done.
 * @return 0 with *item set; WEIR_ECLOSED once closed and drained;
 *         WEIR_ECANCELED/WEIR_EDEADLINE if ctx is done and nothing is
 *         buffered. */
WEIR_API int weir_chan_recv(weir_chan *c, void **item, weir_ctx *ctx);

/* Non-blocking forms. @return 0, WEIR_EAGAIN (full / empty),
 * WEIR_ECLOSED, or WEIR_EINVAL (a NULL item). */
WEIR_API int weir_chan_try_send(weir_chan *c, void *item);
WEIR_API int weir_chan_try_recv(weir_chan *c, void **item);

/* Batched send: blocks until at least one item can be sent, then sends as
 * many of items[0..n) as fit, in order, publishing them together.
 * @return the number sent (1..n), or a negative code as weir_chan_send (none
 * sent; WEIR_EINVAL for n == 0 or a NULL item). Items not sent remain the
 * caller's. */
WEIR_API long weir_chan_send_many(weir_chan *c, void *const *items, size_t n,
                                  weir_ctx *ctx);
/* Batched receive: blocks until at least one item is available, then takes
 * up to max of them, in order.
 * @return the number received (1..max), or WEIR_ECLOSED once closed and
 * drained, or WEIR_ECANCELED/WEIR_EDEADLINE, or WEIR_EINVAL for max == 0. */
WEIR_API long weir_chan_recv_many(weir_chan *c, void **items, size_t max,
                                  weir_ctx *ctx);
/* Non-blocking batched forms: @return count (>= 1), WEIR_EAGAIN,
 * WEIR_ECLOSED, or WEIR_EINVAL (n or max 0, a NULL item). */
WEIR_API long weir_chan_try_send_many(weir_chan *c, void *const *items, size_t n);
WEIR_API long weir_chan_try_recv_many(weir_chan *c, void **items, size_t max);

/* Close the channel and wake every blocked sender and receiver. Idempotent. */
WEIR_API void weir_chan_close(weir_chan *c);
/* @return true once closed (items may still be buffered). */
WEIR_API bool weir_chan_closed(const weir_chan *c);
/* @return an instantaneous count of buffered items (exact when quiescent). */
WEIR_API size_t weir_chan_len(const weir_chan *c);
/* @return the capacity (a power of two). */
WEIR_API size_t weir_chan_cap(const weir_chan *c);

/* ------------------------------------------------------------------------ */
/* 5. Batches                                                               */
/* ------------------------------------------------------------------------ */

/* What a stream carries. */
typedef enum weir_kind {
    WEIR_KIND_NONE = 0,  /* no input (a source) or no output (a sink) */
    WEIR_KIND_BYTES = 1, /* chunks of raw bytes */
    WEIR_KIND_ROWS = 2,  /* row batches */
    WEIR_KIND_ANY = 3,   /* in a stage def: whatever the upstream carries */
} weir_kind;

/* @return "none", "bytes", "rows" or "any". */
WEIR_API const char *weir_kind_name(weir_kind k);

/*
 * A schema: the column names of a rows stream. Immutable once created,
 * reference counted (atomically), shared by every batch of a stream; usable
 * from any thread.
 */
typedef struct weir_schema weir_schema;
/* Copy n names into a new schema with one reference.
 * @return 0, WEIR_EINVAL (a NULL name) or WEIR_ENOMEM. */
WEIR_API int weir_schema_create(weir_schema **out, const char *const *names,
                                size_t n);
/* Add a reference (a const schema may be retained: the count is not part
 * of its value). @return s as a pointer the holder may release. */
WEIR_API weir_schema *weir_schema_retain(const weir_schema *s);
/* Drop a reference; the last one frees. NULL is a no-op. */
WEIR_API void weir_schema_release(weir_schema *s);
WEIR_API size_t weir_schema_ncols(const weir_schema *s);
/* @return the name of column col, or NULL if col >= ncols. */
WEIR_API const char *weir_schema_name(const weir_schema *s, size_t col);
/* @return the index of the first column of that name, or WEIR_ENOTFOUND. */
WEIR_API int weir_schema_find(const weir_schema *s, const char *name);
/* @return true if both have the same names in the same order (two NULLs
 * are equal; NULL and a schema are not). */
WEIR_API bool weir_schema_equal(const weir_schema *a, const weir_schema *b);

/* A field: a slice of the batch's arena. */
typedef struct weir_field {
    uint32_t off;
    uint32_t len;
} weir_field;

typedef struct weir_pool weir_pool;

/*
 * A batch. Bytes batches use data/len; row batches use data/len as the arena
 * that fields point into, with nrows rows of ncols fields each, row-major.
 * The fields are public so that stages read them at full speed; change them
 * only through the functions below (or by writing within cap).
 */
typedef struct weir_batch {
    weir_kind kind;
    uint32_t flags;       /* WEIR_BATCH_* below; runtime-managed */
    uint64_t seq;         /* a source's batch number (0, 1, …), set when it
                             emits; stages that derive a batch may copy it */
    unsigned char *data;  /* bytes, or the rows' arena */
    size_t len;           /* bytes used in data */
    size_t cap;           /* bytes allocated in data */
    weir_schema *schema;  /* rows: one reference held by the batch */
    uint32_t nrows;
    uint32_t ncols;
    weir_field *fields;   /* rows: nrows * ncols slices */
    size_t fields_cap;    /* rows: slices allocated */
    /* Provenance, for messages: the input this batch's data came from (a
     * file name, "-" for stdin; static for the run, owned by the source
     * stage; NULL if none) and the byte offset of data[0] (bytes) or of the
     * first row (rows) in that input, uncompressed. A new origin pointer
     * means a new input began (a parser reads a new header). Set by
     * sources; stages that derive a batch from another copy them. */
    const char *origin;
    uint64_t offset;
    uint64_t line;        /* rows: 1-based line of the first row, or 0 */
    /* private */
    weir_pool *pool;
    int refs;
    uint32_t row_open;    /* fields added to the row being built */
    uint32_t dest;        /* runtime: 1 + the consumer replica a part split
                             by key ahead of a collector goes to; 0: none */
} weir_batch;

#define WEIR_BATCH_END_OF_GROUP 0x1u /* runtime: last output for one input
                                        (never set on a shared batch) */

/* Create a standalone batch (not from a pool) of a kind, with room for
 * data_cap bytes. The caller holds one reference. Only retain, release and
 * shared may be called on a batch from several threads; everything else
 * belongs to its owner.
 * @return 0, WEIR_ENOMEM, or WEIR_EINVAL (kind not BYTES or ROWS). */
WEIR_API int weir_batch_create(weir_batch **out, weir_kind kind, size_t data_cap);
/* Give up one reference: the last one returns the batch to its pool (or
 * frees it). NULL is a no-op. Never blocks. */
WEIR_API void weir_batch_release(weir_batch *b);
/* Add a reference: the batch is then shared and must be treated read-only
 * by every holder (a broadcast does this). @return b. */
WEIR_API weir_batch *weir_batch_retain(weir_batch *b);
/* @return true if more than one holder shares b (then it is read-only). */
WEIR_API bool weir_batch_shared(const weir_batch *b);
/* Empty a batch for reuse: rows, bytes, schema, seq, flags and provenance
 * go; its memory stays. Not on a shared batch. */
WEIR_API void weir_batch_reset(weir_batch *b);
/* Ensure room for `more` further bytes in data.
 * @return 0 or WEIR_ENOMEM (the batch is unchanged). */
WEIR_API int weir_batch_reserve(weir_batch *b, size_t more);
/* Append bytes to data. @return 0 or WEIR_ENOMEM. */
WEIR_API int weir_batch_append(weir_batch *b, const void *p, size_t n);
/* Rows: set the schema (takes a new reference; releases the old one; NULL
 * means no columns). Sets ncols. @return 0, or WEIR_EINVAL for a bytes
 * batch or once a row is started. */
WEIR_API int weir_batch_set_schema(weir_batch *b, weir_schema *s);
/* Rows: append one field (copied into the arena) to the row being built.
 * @return 0; WEIR_ENOMEM (also when the arena would pass 4 GiB: offsets
 * are 32-bit); WEIR_EINVAL (more fields than ncols, or n > UINT32_MAX). On
 * failure the batch is unchanged. */
WEIR_API int weir_batch_add_field(weir_batch *b, const void *p, size_t n);
/* Rows: finish the row being built; it must have exactly ncols fields.
 * @return 0 or WEIR_EINVAL. */
WEIR_API int weir_batch_end_row(weir_batch *b);
/* Rows: append a whole row from another batch's fields.
 * @return 0, WEIR_ENOMEM, or WEIR_EINVAL (ncols differ, row >= src->nrows,
 * or a row is open in dst). */
WEIR_API int weir_batch_copy_row(weir_batch *dst, const weir_batch *src,
                                 uint32_t row);
/* Rows: pointer to field (row, col); its length goes to *len. No checks. */
static inline const unsigned char *weir_batch_field(const weir_batch *b,
                                                    uint32_t row, uint32_t col,
                                                    size_t *len)
{
    const weir_field *f = &b->fields[(size_t)row * b->ncols + col];
    *len = f->len;
    return b->data + f->off;
}

/*
 * A pool recycles batches of one kind across threads: get() reuses a
 * released batch (keeping its memory) or allocates a new one; a batch
 * released by any thread goes back to its pool. Free-list capacity bounds
 * what the pool keeps; beyond it, released batches are freed.
 * The pool must outlive every batch taken from it.
 */
/* keep: the most released batches kept for reuse (>= 1); data_cap: the
 * starting capacity of new batches. get and release are thread-safe.
 * @return 0, WEIR_ENOMEM, or WEIR_EINVAL (keep 0, kind not BYTES/ROWS). */
WEIR_API int weir_pool_create(weir_pool **out, weir_kind kind, size_t keep,
                              size_t data_cap);
/* Take an empty batch (one reference). @return 0 or WEIR_ENOMEM. Never
 * blocks. */
WEIR_API int weir_pool_get(weir_pool *p, weir_batch **out);
/* Free the pool and every batch it keeps. NULL is a no-op. */
WEIR_API void weir_pool_destroy(weir_pool *p);

/* ------------------------------------------------------------------------ */
/* 6. Expressions                                                           */
/* ------------------------------------------------------------------------ */

/* A place in a spec: 1-based line and column (in bytes). `file` is "<expr>"
 * for -e text; it points into storage owned by the spec or expression. */
typedef struct weir_pos {
    const char *file;
    uint32_t line, col;
} weir_pos;

typedef enum weir_expr_kind {
    WEIR_EXPR_NUM,    /* number literal: num (and ival when is_int) */
    WEIR_EXPR_STR,    /* string literal: str/len ($vars become strings) */
    WEIR_EXPR_BOOL,   /* true / false: ival 1 / 0 */
    WEIR_EXPR_COL,    /* column reference: str is the name */
    WEIR_EXPR_LIST,   /* [a, b, …]: args */
    WEIR_EXPR_CALL,   /* function call: str is the name, args the arguments */
    WEIR_EXPR_UNARY,  /* op args[0] */
    WEIR_EXPR_BINARY, /* args[0] op args[1] */
} weir_expr_kind;

typedef enum weir_op {
    WEIR_OP_NONE = 0,
    WEIR_OP_NEG, WEIR_OP_NOT,                                     /* unary */
    WEIR_OP_ADD, WEIR_OP_SUB, WEIR_OP_MUL, WEIR_OP_DIV, WEIR_OP_MOD,
    WEIR_OP_EQ, WEIR_OP_NE, WEIR_OP_LT, WEIR_OP_LE, WEIR_OP_GT, WEIR_OP_GE,
    WEIR_OP_AND, WEIR_OP_OR,
} weir_op;

/* An expression tree, as parsed: independent of any schema. Public so that
 * stages can read their arguments' shape (group reads `sum(fare)`). */
typedef struct weir_expr weir_expr;
struct weir_expr {
    weir_expr_kind kind;
    weir_op op;
    weir_pos pos;
    bool is_int;   /* NUM: written as an integer that fits int64 */
    int64_t ival;
    double num;
    char *str;     /* STR text (NUL-terminated, may hold NULs: use len), COL/CALL name */
    size_t len;
    weir_expr **args;
    size_t nargs;
    uint32_t depth;  /* height of the tree from here (1 for a leaf), set by
                        the parser, which refuses trees over 1000 high */
};

/* Parse one expression from text (NUL-terminated; the spec's expression
 * grammar; text after the expression is an error). file names the text in
 * positions (NULL: "<expr>"); err may be NULL. A tree built by hand must
 * use malloc'd nodes, args and str: weir_expr_destroy frees them.
 * @return 0; WEIR_ESPEC with "file:line:col: message" in err; WEIR_ENOMEM. */
WEIR_API int weir_expr_parse(weir_expr **out, const char *text, const char *file,
                             char *err, size_t errsize);
/* Deep copy (positions keep pointing at the same file name). @return the
 * copy, or NULL when out of memory. */
WEIR_API weir_expr *weir_expr_clone(const weir_expr *e);
/* Free a tree. NULL is a no-op. */
WEIR_API void weir_expr_destroy(weir_expr *e);
/* Write the expression back as spec text (like snprintf). @return the
 * length it needed. */
WEIR_API size_t weir_expr_format(const weir_expr *e, char *buf, size_t size);

/*
 * Evaluation. An expression is compiled once against a schema (columns
 * resolved to indices, functions checked) and then evaluated over whole
 * batches, with no allocation per row.
 *
 * Values and nulls — what `filter` and `compute` rely on:
 *   - a field is text; it "is a number" when the whole field parses as one
 *     (decimal integer or float, optional sign; no spaces);
 *   - arithmetic converts its operands to numbers; text that is not a number
 *     is null, and null in arithmetic gives null; `/` is floating-point;
 *     `%` on integers is the integer remainder; dividing by zero gives null;
 *     integer overflow continues in floating point;
 *   - a comparison is numeric when both sides are numbers (a number value,
 *     or text that is a number); when one side is a number value and the
 *     other text that is not, the text is null; otherwise text compares
 *     as bytes. Any comparison with a null is false (`!=` too);
 *   - `&&`, `||`, `!` and filter take truth: true, a non-zero number and
 *     non-empty text are true; false, 0, "" and null are false.
 */
typedef enum weir_val_type {
    WEIR_VAL_NULL,
    WEIR_VAL_NUM,
    WEIR_VAL_STR,
    WEIR_VAL_BOOL,
} weir_val_type;

typedef struct weir_value {
    weir_val_type type;
    bool is_int;               /* NUM: an exact integer in i */
    int64_t i;                 /* NUM when is_int; BOOL: 0 or 1 */
    double num;                /* NUM (also set when is_int) */
    const unsigned char *str;  /* STR: bytes (not NUL-terminated) */
    size_t len;
} weir_value;

typedef struct weir_eval weir_eval;

/* Compile e against schema. Unknown columns and functions, and wrong
 * argument counts, are errors here, never at run time.
 * @return 0; WEIR_ESPEC with "file:line:col: unknown column 'x'" (or the
 * like) in err; WEIR_ENOMEM. */
WEIR_API int weir_eval_create(weir_eval **out, const weir_expr *e,
                              const weir_schema *schema, char *err,
                              size_t errsize);
/* Evaluate for every row of b (whose schema must equal the compiled one):
 * out[r] for r < b->nrows. Strings in out point into b or into the eval's
 * scratch space: valid until the next call on ev or until b is released.
 * Not thread-safe per ev (one per replica). @return 0, WEIR_ENOMEM, or
 * WEIR_EINVAL if b's column count is not the compiled schema's. */
WEIR_API int weir_eval_batch(weir_eval *ev, const weir_batch *b, weir_value *out);
/* Evaluate an expression that uses no columns (a constant). @return 0,
 * WEIR_EINVAL if it reads a column, or WEIR_ENOMEM. */
WEIR_API int weir_eval_const(weir_eval *ev, weir_value *out);
/* Free. NULL is a no-op. */
WEIR_API void weir_eval_destroy(weir_eval *ev);
/* Is p[0..len) a number by the rule above (the whole field a decimal
 * integer or float, optional sign, no spaces)? If so set *out (NUM; is_int
 * and i for integers that fit int64) and return true. Never allocates. */
WEIR_API bool weir_value_parse(const void *p, size_t len, weir_value *out);
/* @return the truth of v, as filter uses it. */
WEIR_API bool weir_value_truth(const weir_value *v);
/* Write v as output text: integers without a point, floats in the shortest
 * form that reads back exactly (%.17g trimmed), true/false, null as "".
 * @return the length it needed (like snprintf). */
WEIR_API size_t weir_value_format(const weir_value *v, char *buf, size_t size);

/* ------------------------------------------------------------------------ */
/* 7. Stages                                                                */
/* ------------------------------------------------------------------------ */

/* Argument types of a stage's argument table. */
typedef enum weir_arg_type {
    WEIR_ARG_INT,     /* int64 */
    WEIR_ARG_FLOAT,   /* double */
    WEIR_ARG_BOOL,
    WEIR_ARG_STRING,
    WEIR_ARG_LIST,    /* a list of strings (column names, …); one name is a
                         list of one */
    WEIR_ARG_EXPR,    /* an expression over the input's columns */
    WEIR_ARG_COLUMNS, /* the remaining positional arguments, as column
                         names (select(a, b, c)); read with _arg_list */
    WEIR_ARG_NAMED,   /* the remaining name=expression arguments
                         (compute(x = a + b, …)); read with _arg_named */
} weir_arg_type;

/* @return "int", "float", "bool", "string", "list", "expr", "columns" or
 * "named". */
WEIR_API const char *weir_arg_type_name(weir_arg_type t);

typedef struct weir_arg_def {
    const char *name;
    weir_arg_type type;
    const char *def;   /* default, as text; NULL: required */
    const char *help;
} weir_arg_def;

/* Stage flags. */
enum weir_stage_flags {
    WEIR_STAGE_PARALLEL = 0x1,   /* replicas may run side by side (workers=N) */
    WEIR_STAGE_KEYED = 0x2,      /* replicas need rows partitioned by key */
    WEIR_STAGE_MULTI_IN = 0x4,   /* takes several inputs (fan-in) */
    WEIR_STAGE_SEQ_IN = 0x8,     /* with MULTI_IN: inputs in order (concat);
                                    without it, interleaved as they come */
    WEIR_STAGE_KEEP_ORDER = 0x10,/* replicas' output must stay in input
                                    order: ordered=false is refused */
    WEIR_STAGE_SORTED_OUT = 0x20,/* replicas emit rows sorted by
                                    def->compare; the collector merges */
};

typedef struct weir_stage weir_stage;

/* Return codes a stage callback may give besides 0 and negative errors. */
#define WEIR_DONE 1 /* "I need no more input": stop upstream, not an error */

/*
 * A stage definition: one per stage type, static for the program's life.
 * Every callback is optional except process.
 *
 * Replicas of a node run these callbacks at the same time on different
 * threads: keep mutable data in weir_stage_state, not in statics. close()
 * must accept a NULL state (open failed early). On every return from
 * process(), `in` has been emitted or released — error paths too.
 *
 * Per physical instance (replica), on its own thread:
 *   open(s)          once, before any data;
 *   process(s, in)   for each input batch; the stage owns `in` and must pass
 *                    it on (weir_stage_emit) or release it. A source
 *                    (in_kind NONE) gets in == NULL and is called again and
 *                    again until it returns WEIR_DONE;
 *   finish(s)        once at end of input (not after an error or a cancel):
 *                    emit what is held;
 *   close(s)         always, last, to free state.
 * process/open/finish return 0 to go on, WEIR_DONE to end this stage early
 * (upstream is told to stop; the run still succeeds), or a negative code,
 * which fails the whole run (record a message first with
 * weir_stage_errorf()).
 */
typedef struct weir_stage_def {
    unsigned abi;             /* WEIR_ABI_VERSION */
    const char *name;
    const char *summary;
    const weir_arg_def *args; /* table, terminated by a {NULL} entry */
    weir_kind in_kind;
    weir_kind out_kind;       /* ANY: same as the input */
    unsigned flags;           /* weir_stage_flags */
    int (*open)(weir_stage *s);
    int (*process)(weir_stage *s, weir_batch *in);
    int (*finish)(weir_stage *s);
    void (*close)(weir_stage *s);
    /* Before any run, once per node, in topological order, on the caller's
     * thread (`weir check` runs only this): check arguments and say what
     * the output schema will be. `in` is the input's schema, or NULL when it
     * is not known before running (stdin, a stage that cannot tell). Set
     * *out to a new reference, or leave it NULL for "unknown"; a stage
     * without plan passes its input schema on. Return 0, or
     * weir_stage_errorf(s, WEIR_ESPEC, …) — the run does not start. Only
     * the arg getters, weir_stage_name, weir_stage_errorf and
     * weir_stage_peek may be used on s here. */
    int (*plan)(weir_stage *s, const weir_schema *in, weir_schema **out);
    /* Sources of bytes: copy the first bytes the stage would produce (up to
     * size) into buf without consuming anything, so that a parser
     * downstream can read a header at plan time. @return the count, or a
     * negative code (a message via weir_stage_errorf). */
    long (*peek)(weir_stage *s, void *buf, size_t size);
    /* After the whole run has succeeded, on the caller's thread, in
     * topological order: make outputs visible (rename temporaries). An
     * error here fails the run. Not called after a failure or a cancel:
     * close() must then remove whatever the stage left. */
    int (*commit)(weir_stage *s);
    /* WEIR_STAGE_KEYED stages: the name of the LIST argument whose columns
     * partition the input across replicas (group: "by"), used when the
     * node has no explicit weir_node_partition(). */
    const char *partition_arg;
    /* WEIR_STAGE_SORTED_OUT stages: the order of the stage's output rows
     * (<0, 0, >0, like strcmp). Each replica emits rows in this order; the
     * collector merges the replicas' streams by it, so the whole output is
     * in order. s is a handle for reading arguments only (no state). */
    int (*compare)(const weir_stage *s, const weir_batch *a, uint32_t ra,
                   const weir_batch *b, uint32_t rb);
    /* Stages whose input must be cut at unit boundaries before replicas
     * can share it (CSV records that may span batches): a bytes -> bytes
     * stage the runtime runs on one thread in front of the node, feeding
     * the replicas round-robin (the ordered collector restores order).
     * It reads the node's arguments (its own table is not used) and emits
     * batches that each begin and end on a unit boundary. */
    const struct weir_stage_def *splitter;
} weir_stage_def;

/* Arguments, resolved against the def's table (defaults applied). Asking
 * for a name the table lacks, or with the wrong type, aborts: it is a bug in
 * the stage, not a user error (the graph checked user arguments). */
WEIR_API int64_t weir_stage_arg_int(const weir_stage *s, const char *name);
WEIR_API double weir_stage_arg_float(const weir_stage *s, const char *name);
WEIR_API bool weir_stage_arg_bool(const weir_stage *s, const char *name);
/* @return the string (valid for the run), or NULL if unset without default. */
WEIR_API const char *weir_stage_arg_str(const weir_stage *s, const char *name);
/* @return the number of list items; *items points at them (valid for the run). */
WEIR_API size_t weir_stage_arg_list(const weir_stage *s, const char *name,
                                    const char *const **items);
/* @return true if the user gave the argument (not just the default). */
WEIR_API bool weir_stage_arg_given(const weir_stage *s, const char *name);
/* @return an EXPR argument's tree (valid for the run), or NULL if unset. */
WEIR_API const weir_expr *weir_stage_arg_expr(const weir_stage *s, const char *name);
/* A NAMED argument: @return the number of pairs; names[i] = exprs[i], in
 * spec order (valid for the run). */
WEIR_API size_t weir_stage_arg_named(const weir_stage *s, const char *name,
                                     const char *const **names,
                                     const weir_expr *const **exprs);
/* Where the stage is in the spec (file NULL when built by the graph API). */
WEIR_API weir_pos weir_stage_pos(const weir_stage *s);
/* At plan time: the first bytes of the stream this stage reads, from the
 * nearest upstream source with a peek callback, through stages that pass
 * bytes unchanged. @return the count; WEIR_ENOTFOUND if no upstream can
 * tell (stdin, a transforming stage); or a negative error. */
WEIR_API long weir_stage_peek(weir_stage *s, void *buf, size_t size);

/* Per-instance state for the callbacks to keep. */
WEIR_API void *weir_stage_state(const weir_stage *s);
WEIR_API void weir_stage_set_state(weir_stage *s, void *state);
/* The run's context: poll weir_ctx_done() in long loops. */
WEIR_API weir_ctx *weir_stage_ctx(const weir_stage *s);
/* The node's label (its name in the spec, or the def's name). */
WEIR_API const char *weir_stage_name(const weir_stage *s);
/* The memory this instance may hold in state (sort runs, group tables):
 * the node's mem= argument, else the run's budget, divided among the
 * replicas. Stages past it spill to weir_stage_tmpdir() or fail with a
 * message naming the budget — they never grow without bound. */
WEIR_API size_t weir_stage_mem_budget(const weir_stage *s);
/* The directory for this run's spill files (exists; the stage creates
 * and removes its own files in it). */
WEIR_API const char *weir_stage_tmpdir(const weir_stage *s);
/* Report how far the stage is (e.g. input bytes read of the total), for
 * live progress displays. Cheap (two relaxed stores); call per batch. */
WEIR_API void weir_stage_progress(weir_stage *s, uint64_t done, uint64_t total);
/* From plan(): the input columns the stage reads, by name. The runtime
 * may then hand it row batches holding just those columns, in that order
 * (a split by key copies only them); a stage that declares nothing gets
 * every column. A stage that reads columns by name from each batch's
 * schema (weir_schema_find) needs nothing else. Replaces an earlier
 * declaration. The names are copied (the caller keeps cols); never
 * blocks. @return 0, WEIR_EINVAL (not from plan(), or a NULL name), or
 * WEIR_ENOMEM. */
WEIR_API int weir_stage_reads(weir_stage *s, const char *const *cols, size_t n);
/* Report time the stage spent blocked on its own waiting for downstream
 * to take more (a splitter holding back until its replicas catch up), as
 * weir_now_ns() readings: it then counts as waiting to send (and shows in
 * a trace as such), not as busy. Call from the stage's own callbacks;
 * never blocks. */
WEIR_API void weir_stage_waited_out(weir_stage *s, uint64_t t0_ns, uint64_t t1_ns);
/* This instance's replica index (0..replicas-1) and the replica count. */
WEIR_API int weir_stage_replica(const weir_stage *s);
WEIR_API int weir_stage_replicas(const weir_stage *s);

/* A fresh empty batch of the stage's output kind from the output pool (a
 * rows batch has no schema yet: set it before adding fields).
 * @return 0 or WEIR_ENOMEM. Never blocks. */
WEIR_API int weir_stage_batch(weir_stage *s, weir_batch **out);

/* Send b downstream (to every consumer); only from open/process/finish, on
 * the stage's thread. Blocks while downstream is full.
 * Takes ownership of b in every case (it is released on failure).
 * @return 0; WEIR_DONE when no consumer wants more (stop producing and
 * return WEIR_DONE); WEIR_ECANCELED/WEIR_EDEADLINE when the run is
 * cancelled (return it). An empty batch is not sent (it is released) —
 * except a rows batch with a schema that is the stage's first: that is how
 * the columns reach downstream when there are no rows (a stage that may
 * produce no rows emits one empty batch with its schema). */
WEIR_API int weir_stage_emit(weir_stage *s, weir_batch *b);

/* Record the run's error message for this stage (printf-style), unless an
 * earlier error was recorded (thread-safe: the first error of the run
 * wins). The run reports
 * "stage 'NAME': MESSAGE". @return code, to write `return
 * weir_stage_errorf(s, WEIR_EDATA, "...")`. Never prints. */
WEIR_API int weir_stage_errorf(weir_stage *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------------------------ */
/* 8. Graphs                                                                */
/* ------------------------------------------------------------------------ */

/*
 * A graph is the logical DAG: nodes (stage instances with arguments) joined
 * by edges. weir_graph_run() validates it, expands it into the physical
 * graph (replicas, distributors, collectors, broadcasts) and runs every
 * physical stage on its own worker thread until all end, the first fails, or
 * the context is cancelled.
 *
 * Expansion rules:
 *   - workers=N (N>1) on a WEIR_STAGE_PARALLEL stage makes N replicas. The
 *     upstream sends batch k to replica k mod N (round-robin) — or, for a
 *     node partitioned by key columns, splits each rows batch by key hash
 *     so a key always reaches the same replica. Ordered collection (the
 *     default for round-robin) reads replica k mod N for the k-th group,
 *     so downstream sees source order; the per-replica channels are the
 *     bounded reorder buffer. Unordered collection (ordered=false, and
 *     always for hash partitioning) takes batches as they come.
 *   - A node with several consumers broadcasts: each consumer sees every
 *     batch, shared read-only by reference count.
 *   - Fan-in stages (WEIR_STAGE_MULTI_IN) take several inputs, interleaved
 *     (merge) or one after another (concat).
 */
typedef struct weir_graph weir_graph;
typedef struct weir_node weir_node;

/* @return 0 or WEIR_ENOMEM. */
WEIR_API int weir_graph_create(weir_graph **out);
/* Free the graph (not while it runs). NULL is a no-op. */
WEIR_API void weir_graph_destroy(weir_graph *g);

/* Add a node running def, labelled label (NULL: the def's name; copied).
 * The def must outlive the graph. @return 0, WEIR_EINVAL (def's ABI differs, no
 * process callback) or WEIR_ENOMEM. *out is owned by the graph. */
WEIR_API int weir_graph_add(weir_graph *g, const weir_stage_def *def,
                            const char *label, weir_node **out);

/* Set an argument. The name must be in the def's table (or be one of the
 * runtime's own: "workers" int >= 1, "ordered" bool, "mem" int bytes for
 * weir_stage_mem_budget), with a matching type (an int is accepted for a
 * float argument). @return 0, WEIR_ENOTFOUND or
 * WEIR_EINVAL — weir_graph_errmsg() says which and why. */
WEIR_API int weir_node_set_int(weir_node *n, const char *arg, int64_t v);
WEIR_API int weir_node_set_float(weir_node *n, const char *arg, double v);
WEIR_API int weir_node_set_bool(weir_node *n, const char *arg, bool v);
WEIR_API int weir_node_set_str(weir_node *n, const char *arg, const char *v);
WEIR_API int weir_node_set_list(weir_node *n, const char *arg,
                                const char *const *items, size_t count);

/* Set an EXPR argument (the tree is copied). @return as weir_node_set_int. */
WEIR_API int weir_node_set_expr(weir_node *n, const char *arg, const weir_expr *e);
/* Append name = e to a NAMED argument (copied); a name not in the table
 * goes to the table's NAMED entry, if it has one. @return 0,
 * WEIR_ENOTFOUND (no NAMED entry), WEIR_EINVAL (name given twice) or
 * WEIR_ENOMEM. */
WEIR_API int weir_node_add_named(weir_node *n, const char *name, const weir_expr *e);
/* Record where the node is in the spec, for messages ("stage 'csv'
 * (etl.weir:2:23): …"). file must outlive the graph. */
WEIR_API void weir_node_set_pos(weir_node *n, weir_pos pos);
/* The schema plan() gave the node's output at the last validation, or NULL
 * (unknown, or not validated). Borrowed from the graph. */
WEIR_API const weir_schema *weir_node_schema(const weir_node *n);
/* The node's label, and its stage definition. */
WEIR_API const char *weir_node_label(const weir_node *n);
WEIR_API const weir_stage_def *weir_node_def(const weir_node *n);

/* Partition the node's input by the hash of these columns (rows only): with
 * N replicas, rows whose key fields are equal reach the same replica.
 * Stages flagged WEIR_STAGE_KEYED must have it when workers > 1.
 * @return 0, WEIR_EINVAL or WEIR_ENOMEM. */
WEIR_API int weir_node_partition(weir_node *n, const char *const *cols,
                                 size_t count);

/* Connect from's output to to's next input. A node with several outgoing
 * edges broadcasts. @return 0, WEIR_EINVAL (a source as `to`, a sink as
 * `from`, a second input to a single-input stage, a self-loop, or kinds
 * that cannot meet) or WEIR_ENOMEM. */
WEIR_API int weir_graph_connect(weir_graph *g, weir_node *from, weir_node *to);

/* Run options; zero-initialise, then set what you need. */
typedef struct weir_run_opts {
    size_t chan_capacity; /* batches per edge channel; 0: 16 (a graph
                             channel also stops taking more once what it
                             holds reaches 2 MiB and two batches) */
    int max_workers;      /* replicas for workers=auto (the default of
                             parallel stages); 0: the CPUs the process
                             may use (its affinity mask). An
                             explicit workers=N is not capped */
    int launcher;         /* WEIR_LAUNCH_*; 0: AUTO */
    size_t mem_budget;    /* bytes a stateful stage may hold (per node,
                             shared by its replicas); 0: 1 GiB */
    const char *tmpdir;   /* for spill files; NULL: $TMPDIR or /tmp */
    bool trace;           /* record spans for weir_graph_trace_write */
    bool no_timing;       /* skip the clock reads behind busy/wait times
                             (counts stay); to measure what timing costs */
} weir_run_opts;

enum weir_launch {
    WEIR_LAUNCH_AUTO = 0,    /* OpenMP team when it can hold every worker */
    WEIR_LAUNCH_OPENMP = 1,  /* one OpenMP thread per physical stage */
    WEIR_LAUNCH_PTHREAD = 2, /* one pthread per physical stage */
};

/* Validate the graph without running it: structure, kinds, arguments, and
 * every stage's plan() (schemas, columns). @return 0, WEIR_ESPEC (message
 * in weir_graph_errmsg) or WEIR_ENOMEM. */
WEIR_API int weir_graph_check(weir_graph *g, const weir_run_opts *opts);

/* Validate, expand and run the graph until every stage has ended, one has
 * failed, or ctx (may be NULL) is done. Blocks the caller; the caller's
 * thread serves as one of the workers. A graph may be run more than once,
 * one run at a time; do not change it while it runs. Different graphs may
 * run at the same time from different threads.
 * @return 0 on success (including early completion such as head);
 * the first stage error (its message in weir_graph_errmsg());
 * WEIR_ECANCELED/WEIR_EDEADLINE if ctx ended it; WEIR_ESPEC if validation
 * failed (message says which node and why). */
WEIR_API int weir_graph_run(weir_graph *g, weir_ctx *ctx,
                            const weir_run_opts *opts);

/* The last error message for g ("" if none), e.g.
 * "stage 'parse': line 3: bad number". Valid until the next call on g. */
WEIR_API const char *weir_graph_errmsg(const weir_graph *g);

/*
 * Counters. Each replica counts its own (single writer, relaxed atomics, a
 * clock read per batch); any thread may read them while weir_graph_run
 * works (each counter is read atomically, not all of them at one instant),
 * and they stay readable after the run until the next one starts.
 */
typedef struct weir_node_stats {
    uint64_t batches_in, batches_out;
    uint64_t rows_in, rows_out;
    uint64_t bytes_in, bytes_out;
    uint64_t busy_ns;       /* in the stage's callbacks, less wait_out_ns */
    uint64_t wait_in_ns;    /* blocked waiting for input */
    uint64_t wait_out_ns;   /* blocked sending (downstream full) */
    uint64_t progress_done; /* weir_stage_progress(): e.g. input bytes read */
    uint64_t progress_total;/* and their total; 0 if the stage reports none */
    uint64_t queued;        /* live: batches waiting in the node's input
                               channels; 0 once the run has ended */
    uint64_t capacity;      /* those channels' total capacity */
    int replicas;
    int finished;           /* replicas that have ended */
} weir_node_stats;
/* The node's counters summed over its replicas. @return 0. */
WEIR_API int weir_node_get_stats(const weir_node *n, weir_node_stats *st);
/* One replica's counters (replicas, finished are 1/0 for it); r = -1
 * (WEIR_STATS_SPLITTER): the node's splitter (weir_stage_def.splitter);
 * r = -2 (WEIR_STATS_COLLECTOR): the collector that gathers a replicated
 * node's output (ordering, merging, and splitting rows by key for a
 * keyed consumer: that is its busy time; its busy time is known once the
 * run ends). Neither is in the node's sum. @return 0, or WEIR_EINVAL if r
 * is out of range (or no run yet, or no splitter or collector: a
 * chained node has none). */
#define WEIR_STATS_SPLITTER (-1)
#define WEIR_STATS_COLLECTOR (-2)
WEIR_API int weir_node_replica_stats(const weir_node *n, int r, weir_node_stats *st);
/* The graph's nodes in the order they were added. @return the count;
 * *nodes is valid until the graph changes. */
WEIR_API size_t weir_graph_nodes(const weir_graph *g, weir_node *const **nodes);
/* The node's upstream nodes, one per input port. @return the count. */
WEIR_API size_t weir_node_inputs(const weir_node *n, weir_node *const **inputs);
/* Where the node is in the spec (file NULL if built by the graph API). */
WEIR_API weir_pos weir_node_pos(const weir_node *n);

/* Write the last run's trace (needs weir_run_opts.trace) to fd as Chrome
 * trace-event JSON (Perfetto, chrome://tracing): one track per worker,
 * spans "process" (a batch in the stage's callback), "wait input" and
 * "wait output". @return 0, WEIR_EINVAL (no trace recorded) or WEIR_EIO. */
WEIR_API int weir_graph_trace_write(const weir_graph *g, int fd);

/* Write the physical graph the run would build, as text, into buf
 * (like snprintf). @return the length it needed. */
WEIR_API size_t weir_graph_describe(weir_graph *g, const weir_run_opts *opts,
                                    char *buf, size_t size);
/* The same physical graph in Graphviz's dot language (`dot -Tsvg`).
 * @return the length it needed; an invalid graph gives a one-node graph
 * whose label is the error. */
WEIR_API size_t weir_graph_dot(weir_graph *g, const weir_run_opts *opts, char *buf,
                               size_t size);

/* The registry of built-in stages (stages/registry.c): "merge" (interleaved
 * fan-in), "concat" (fan-in, inputs one after another), and more as they
 * are added. @return the definition, or NULL if no stage has that name. */
WEIR_API const weir_stage_def *weir_stage_find(const char *name);
/* @return the number of stages known (built-in, then registered); *defs
 * points at the list, valid until the next weir_stage_register. */
WEIR_API size_t weir_stage_list(const weir_stage_def *const **defs);
/* Make a stage known by name to weir_stage_find and to specs; def must
 * outlive its use. Not thread-safe: register before compiling specs.
 * @return 0; WEIR_EINVAL (ABI mismatch, no name or process, or the name is
 * taken); WEIR_ENOMEM. */
WEIR_API int weir_stage_register(const weir_stage_def *def);

/*
 * Plugins: a shared object that registers stages. Write the stages as
 * usual, register them in an init function, and name it with WEIR_PLUGIN:
 *
 *     static int init(void) { return weir_stage_register(&my_stage); }
 *     WEIR_PLUGIN(init)
 *
 * Build it against weir.h alone, without linking libweir (the program
 * that loads it provides the weir_ functions):
 *
 *     cc -shared -fPIC $(pkg-config --cflags weir) -o mystages.so mystages.c
 *
 * and load it with load("./mystages.so") in a spec, `weir run --plugin`,
 * or weir_plugin_load() in a program (which must export its weir_ symbols:
 * link it with -rdynamic, or with -lweir dynamically).
 */
#ifdef __cplusplus
#define WEIR__PLUGIN_LINKAGE extern "C"
#else
#define WEIR__PLUGIN_LINKAGE extern
#endif
#define WEIR_PLUGIN(init_fn)                                                   \
    WEIR__PLUGIN_LINKAGE __attribute__((visibility("default")))                \
    const unsigned weir_plugin_abi;                                            \
    WEIR__PLUGIN_LINKAGE __attribute__((visibility("default"))) int            \
    weir_plugin_init(void);                                                    \
    const unsigned weir_plugin_abi = WEIR_ABI_VERSION;                         \
    int weir_plugin_init(void) { return init_fn(); }

/* Load the plugin at path (a bare name means the current directory) and
 * run its init, which registers its stages. The object stays loaded; loading
 * an object that is already loaded does nothing and returns 0. err may be
 * NULL.
 * @return 0; WEIR_ENOTFOUND (cannot open: missing file, unresolved
 * symbols), WEIR_EINVAL (not a weir plugin, another ABI, or init failed) —
 * with a one-line reason in err. Not thread-safe (like registering). */
WEIR_API int weir_plugin_load(const char *path, char *err, size_t errsize);

/* ------------------------------------------------------------------------ */
/* 9. Specs                                                                 */
/* ------------------------------------------------------------------------ */

/* Options for weir_spec_compile; zero-initialise. */
typedef struct weir_spec_opts {
    const char *const *vars; /* "name=value" strings, for $name */
    size_t nvars;
    bool oneliner;           /* -e text: a last chain without a sink
                                writes CSV to stdout */
} weir_spec_opts;

/*
 * Compile spec text into a new graph (see the spec language in DESIGN.md):
 * statements `let NAME = chain`, `chain` and `load("plugin.so")` (loads a
 * plugin there and then, so later statements can use its stages), chains of
 * stage calls joined by `|`, stage arguments positional or name=value.
 * Stages are looked up in the registry. `file` names the text in positions ("<expr>" for -e).
 * The graph keeps its own copy of file and of every expression.
 * @return 0 with *out set; WEIR_ESPEC with "file:line:col: message" in err;
 * WEIR_ENOMEM.
 */
WEIR_API int weir_spec_compile(weir_graph **out, const char *text, size_t len,
                               const char *file, const weir_spec_opts *opts,
                               char *err, size_t errsize);

#ifdef __cplusplus
}
#endif
#endif /* WEIR_H */
