/*
 * graph.h — internal structures of the logical graph and of a run.
 */
#ifndef WEIR_GRAPH_H
#define WEIR_GRAPH_H

#include "internal.h"

/* One argument of a node, resolved against the stage's table. */
typedef struct weir__arg {
    const weir_arg_def *def;
    bool set;   /* has a value (given or default) */
    bool given; /* the user set it */
    int64_t i;
    double f;
    bool b;
    char *s;
    char **list;
    size_t nlist;
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
    char **part;        /* partition key columns */
    size_t npart;
    weir_node **inputs; /* upstream nodes, one per input port */
    size_t ninputs;
    weir_node **outputs;
    size_t noutputs;
    /* Resolved by validation. */
    weir_kind in_kind, out_kind;
    int replicas;
    /* Counters of the last run, summed over replicas. */
    weir_node_stats stats;
};

struct weir_graph {
    weir_node **nodes;
    size_t nnodes, cap;
    char errmsg[1024];
};

void weir__graph_errorf(weir_graph *g, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Check the graph and resolve kinds and replica counts. On success
 * *order is a malloc'd topological order of the nodes.
 * @return 0, WEIR_ESPEC (message in g->errmsg) or WEIR_ENOMEM. */
int weir__graph_validate(weir_graph *g, const weir_run_opts *o, weir_node ***order);

/* The resolved argument `name` of type t; aborts on a stage bug. */
const weir__arg *weir__stage_arg(const weir_node *n, const char *name,
                                 weir_arg_type t);

#endif
