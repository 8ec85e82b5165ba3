/*
 * cli.h — shared by the weir command's files.
 */
#ifndef WEIR_CLI_H
#define WEIR_CLI_H

#include "weir.h"

#include <stdio.h>

/* Exit codes (DESIGN.md). */
enum {
    EXIT_OK = 0,
    EXIT_RUNTIME = 1, /* runtime or data error */
    EXIT_USAGE = 2,   /* usage or spec error */
    EXIT_SIGINT = 130,
    EXIT_SIGTERM = 143,
};

/* Print "weir: MESSAGE" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Options shared by run, check, explain (and bench later). */
typedef struct spec_args {
    const char *path;      /* spec file, or NULL with -e */
    const char *expr;      /* -e TEXT */
    const char **vars;     /* --var k=v, as given */
    size_t nvars;
    int threads;           /* --threads N (0: all CPUs) */
    double timeout;        /* --timeout, seconds (0: none) */
    uint64_t mem;          /* --mem, bytes (0: the library's default) */
    int dot;               /* explain --dot */
    int stats;             /* run --stats[=…]: a cli_stats_mode */
    int progress;          /* run: -1 auto (stderr is a terminal), 0 off, 1 on */
    const char *trace;     /* run --trace FILE */
    int runs, warmup;      /* bench --runs N --warmup K */
    int json;              /* bench --json */
} spec_args;

enum cli_stats_mode {
    CLI_STATS_OFF = 0,
    CLI_STATS_TABLE,    /* --stats: one row per stage */
    CLI_STATS_REPLICAS, /* --stats=replicas: and one row per replica */
    CLI_STATS_JSON,     /* --stats=json: one JSON object (docs/stats-schema.md) */
};

/* Parse argv for a spec command. allow: the option letters this command
 * takes beyond the common ones ("t" timeout, "d" dot, "n" threads, "m" mem,
 * "s" stats/progress/trace, "b" bench's runs/warmup/json).
 * @return 0, or an exit code after printing the error. */
int cli_spec_args(int argc, char **argv, const char *cmd, const char *allow,
                  spec_args *a, void (*help)(FILE *));

/* Compile the spec of a (file or -e). @return 0, or an exit code after
 * printing the error. */
int cli_compile(const spec_args *a, weir_graph **out);
/* --threads N for run and bench: when the process may use more than N
 * CPUs, keep it (this thread, and so every thread it starts) to the first
 * N of them. @return 0 or EXIT_RUNTIME (reported). */
int cli_limit_cpus(int n);

/* Parse "500ms", "1s", "2m", "1h", "1.5s" (a bare number is seconds).
 * @return 0 and *secs, or -1. */
int cli_duration(const char *s, double *secs);

/* ---- stats.c: what a run did, per stage, and what bounded it ---------------- */

typedef struct cli_stage {
    const weir_node *node;
    const char *label;      /* the node's label */
    const char *stage;      /* its stage definition's name */
    char pos[160];          /* "file:line:col", or "" */
    weir_kind in, out;      /* resolved (ANY becomes the upstream's kind) */
    bool parallel;          /* the stage may run as several replicas */
    weir_node_stats st;     /* summed over replicas */
    weir_node_stats *rep;   /* per replica (nrep of them; may be NULL) */
    int nrep;
    bool has_split;         /* a splitter cuts the input in front of the */
    weir_node_stats split;  /* replicas, on one thread: its own counters */
    bool has_col;           /* a collector gathers the replicas' output on */
    weir_node_stats col;    /* one thread: its own counters */
    size_t *up, nup;        /* indexes of the upstream stages */
    size_t *down, ndown;    /* and of the downstream ones */
} cli_stage;

typedef struct cli_stats {
    uint64_t wall_ns;       /* the run's wall time, as the CLI measured it */
    int cpus;               /* online CPUs */
    bool timing;            /* false: the run skipped the clock reads */
    size_t n;
    cli_stage *s;           /* in the order the spec added the nodes */
    /* The stage that bounds the run (-1: none), and why. */
    long bn;
    const char *bn_kind;    /* "stage", "input", "output" or "none" */
    char reason[512], advice[512];
} cli_stats;

/* Read every node's counters after a run of g that took wall_ns, and name
 * the bottleneck. @return 0, or WEIR_ENOMEM (out is then empty). */
int cli_stats_collect(weir_graph *g, uint64_t wall_ns, bool timing, cli_stats *out);
void cli_stats_free(cli_stats *st);
/* The table (--stats, --stats=replicas), ending with the bottleneck line. */
void cli_stats_table(FILE *f, const cli_stats *st, bool replicas);
/* The JSON object of docs/stats-schema.md, without a final newline.
 * status: "ok", "error", "interrupted" or "deadline"; error: the message,
 * or NULL. */
void cli_stats_json(FILE *f, const cli_stats *st, const char *status, const char *error);
/* Bytes the sources read (their progress counters: bytes on disk), or what
 * they produced when they report no progress (gen). */
uint64_t cli_stats_input_bytes(const cli_stats *st);
/* Rows entering the pipeline: out of the stages that make rows from
 * something else (a source such as gen, a parser such as csv). */
uint64_t cli_stats_rows(const cli_stats *st);
/* Write s as a JSON string, quoted and escaped. */
void cli_json_str(FILE *f, const char *s);
/* "1.23 s", "850 ms", "2:03" — a duration for people. */
void cli_fmt_secs(char *buf, size_t size, double secs);
/* "812.3 K", "1.25 M" — a count or rate for people. */
void cli_fmt_count(char *buf, size_t size, double v);

/* ---- progress.c: the live display on stderr -------------------------------- */

typedef struct cli_progress cli_progress;
/* Start redrawing a progress display of g's run on stderr, about five times a
 * second (the first after half a second). When stdout is the same terminal,
 * it is routed through the display so that output and progress lines do not
 * overwrite each other. @return the display, or NULL if it cannot start (the
 * run goes on without it). */
cli_progress *cli_progress_start(weir_graph *g);
/* Stop the display: join its thread, erase its lines, give stdout back.
 * Nothing is printed by it afterwards. NULL is a no-op. */
void cli_progress_stop(cli_progress *p);
/* From a signal handler, before _exit: erase the lines if they are shown.
 * Async-signal-safe. */
void cli_progress_erase_from_signal(void);

/* WEIR_NO_TIMING=1 (undocumented) makes runs skip the clock reads behind the
 * busy and wait times, to measure what they cost (bench/RESULTS.md). */
bool cli_no_timing(void);

int cmd_run(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_explain(int argc, char **argv);
int cmd_stages(int argc, char **argv);
int cmd_gen(int argc, char **argv);

#endif
