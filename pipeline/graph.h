/*
 * graph.h — internal structures of the logical graph and of a run.
 */
#ifndef WEIR_GRAPH_H
#define WEIR_GRAPH_H

#include "internal.h"

#include <pthread.h>

/* Worker threads a run may start; OpenMP teams above WEIR__OMP_MAX_TEAM
 * give way to pthreads (libgomp cannot report a failed thread creation,
 * it exits). */
#define WEIR__MAX_WORKERS 4096
#define WEIR__OMP_MAX_TEAM 256

/* A replica's live counters: written by its worker only, read by anyone. */
typedef struct weir__counters {
    _Atomic uint64_t batches_in, batches_out, rows_in, rows_out, bytes_in, bytes_out;
    _Atomic uint64_t busy_ns, wait_in_ns, wait_out_ns;
    _Atomic uint64_t progress_done, progress_total;
    _Atomic int finished;
} weir__counters;

/* Single writer: a relaxed load and store, no locked instruction. */
#define WEIR__CNT_ADD(field, v)                                                   \
    atomic_store_explicit(&(field), atomic_load_explicit(&(field), memory_order_relaxed) + \
                                        (uint64_t)(v), memory_order_relaxed)

/* Trace spans of one worker (weir_run_opts.trace). */
enum { WEIR__SPAN_PROCESS, WEIR__SPAN_WAIT_IN, WEIR__SPAN_WAIT_OUT };
typedef struct weir__span {
    uint64_t start, end;
    int kind;
} weir__span;
typedef struct weir__track {
    char name[128];
    weir__span *spans;
    size_t n, cap;
    uint64_t dropped;
} weir__track;
void weir__track_add(weir__track *t, int kind, uint64_t start, uint64_t end);
void weir__graph_free_trace(weir_graph *g);

/* One argument of a node, resolved against the stage's table. */
typedef struct weir__arg {
    const weir_arg_def *def;
    bool set;   /* has a value (given or default) */
    bool given; /* the user set it */
    int64_t i;
    double f;
    bool b;
    char *s;
    char **list;      /* LIST, COLUMNS */
    size_t nlist;
    weir_expr *expr;  /* EXPR */
    char **names;     /* NAMED: names[i] = exprs[i] */
    weir_expr **exprs;
    size_t nnamed;
} weir__arg;

struct weir_node {
    weir_graph *g;
    int id;
    const weir_stage_def *def;
    char *label;
    weir__arg *args;
    size_t nargs;
    int workers;        /* 0: auto */
    bool ordered;
    int64_t mem;        /* mem= bytes; 0: the run's budget */
    char **part;        /* partition key columns */
    size_t npart;
    weir_node **inputs; /* upstream nodes, one per input port */
    size_t ninputs;
    weir_node **outputs;
    size_t noutputs;
    /* Resolved by validation. */
    weir_kind in_kind, out_kind;
    int replicas;
    weir_schema *schema; /* output schema from plan(), NULL if unknown */
    weir_pos pos;
    bool auto_part;      /* part[] came from def->partition_arg */
    size_t mem_budget;   /* resolved at validation: mem, or the run's */
    const char *tmpdir;  /* resolved at validation */
    /* Counters of the last run: summed over replicas, and per replica. */
    weir_node_stats stats;
    weir_node_stats *rstats;
    int nrstats;
    weir_node_stats split_stats; /* the splitter's, when has_split */
    bool has_split;
    weir_node_stats col_stats;   /* the collector's, when has_col */
    bool has_col;
    const char **reads;          /* weir_stage_reads(), when has_reads (the */
    size_t nreads;               /* names live as long as the graph) */
    bool has_reads;
};

struct weir_graph {
    weir_node **nodes;
    size_t nnodes, cap;
    char **strings;   /* kept for the graph's life (spec file names) */
    size_t nstrings;
    pthread_mutex_t live_mu; /* guards live: a reader vs. the run's teardown */
    struct run *live;        /* the run in progress, for live counters */
    weir__track *tracks;     /* the last run's trace */
    size_t ntracks;
    uint64_t trace_t0;
    char errmsg[1024];
};

/* A copy of s that lives as long as g. @return it, or NULL (no memory). */
const char *weir__graph_strdup(weir_graph *g, const char *s);

void weir__graph_errorf(weir_graph *g, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Check the graph and resolve kinds and replica counts. On success
 * *order is a malloc'd topological order of the nodes.
 * @return 0, WEIR_ESPEC (message in g->errmsg) or WEIR_ENOMEM. */
int weir__graph_validate(weir_graph *g, const weir_run_opts *o, weir_node ***order);

/* Batches per channel when weir_run_opts.chan_capacity is 0. */
#define WEIR__CHAN_CAPACITY 16
/* Once the batches queued in a channel hold this much, a sender waits
 * until fewer than two are queued (run.c, emit_into). */
#define WEIR__CHAN_BYTES ((size_t)2 << 20)

/* Does x feed its one consumer replica by replica (x's k-th replica
 * straight into the consumer's k-th, no collector or distributor between)?
 * See run.c. */
bool weir__node_chained(const weir_node *x);

/* A physical stage instance (one replica). Plan-time handles have r NULL. */
struct weir_stage {
    struct run *r;
    weir_node *node;
    const weir_stage_def *def; /* node->def, or its splitter */
    weir_pool *pool;           /* where weir_stage_batch draws from */
    int replica, nreplicas;
    void *state;
    struct pchan **in;    /* input ports, read in order (concat) or one (merge) */
    size_t nin;
    struct emitter *out;
    bool ordered_replica; /* groups end with WEIR_BATCH_END_OF_GROUP */
    bool in_finish;
    bool downstream_gone;
    bool opened;          /* open() was called: close() is due */
    bool is_splitter;     /* runs node->def->splitter in front of replicas */
    bool chained_in;      /* fed by the same replica of its upstream: its
                             input carries that replica's groups */
    bool after_final;     /* chained_in: the upstream's groups are over */
    weir_batch *pending;  /* ordered replica: held until the group ends */
    weir__counters st;
    uint64_t wait_out_mirror; /* st.wait_out_ns, read by this thread only */
    weir__track *track;       /* NULL unless tracing */
};

/* A stage handle for plan-time callbacks (no run): errors go to the graph. */
void weir__plan_stage_init(weir_stage *s, weir_node *n);

/* The resolved argument `name` of type t; aborts on a stage bug. */
const weir__arg *weir__stage_arg(const weir_node *n, const char *name,
                                 weir_arg_type t);

#endif
