/*
 * stats.c — what a run did, stage by stage, and which stage bounded it:
 * the table of `weir run --stats`, the JSON of `--stats=json`
 * (docs/stats-schema.md), and the bottleneck heuristic shared with
 * `weir bench`.
 *
 * Percentages are of the run's wall time times the stage's replicas: a
 * stage with 4 replicas busy all the time is 100% busy, not 400%.
 */
#include "cli.h"

#include <sched.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Below this busy fraction the busiest stage is not called a bottleneck:
 * the run spent most of its time in waits between stages instead. */
#define BN_MIN_BUSY 0.5
/* A neighbour's wait is worth mentioning from this fraction up. */
#define BN_EVIDENCE 0.10
/* The CPUs count as saturated when busy time adds up to this share of
 * wall time × CPUs. */
#define BN_SATURATED 0.9

/* ---- formatting helpers ------------------------------------------------------ */

void cli_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p == '\t') fputs("\\t", f);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

void cli_fmt_secs(char *buf, size_t size, double secs)
{
    if (secs < 0) secs = 0;
    if (secs < 1) {
        snprintf(buf, size, "%.0f ms", secs * 1e3);
    } else if (secs < 60) {
        snprintf(buf, size, "%.2f s", secs);
    } else {
        unsigned long t = (unsigned long)(secs + 0.5);
        if (t < 3600) snprintf(buf, size, "%lu:%02lu", t / 60, t % 60);
        else snprintf(buf, size, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
    }
}

void cli_fmt_count(char *buf, size_t size, double v)
{
    if (v < 1e3) snprintf(buf, size, "%.0f", v);
    else if (v < 1e6) snprintf(buf, size, "%.1f K", v / 1e3);
    else if (v < 1e9) snprintf(buf, size, "%.2f M", v / 1e6);
    else snprintf(buf, size, "%.2f G", v / 1e9);
}

/* ---- collecting ---------------------------------------------------------------- */

static long stats_index(const cli_stats *st, const weir_node *n)
{
    for (size_t i = 0; i < st->n; i++)
        if (st->s[i].node == n) return (long)i;
    return -1;
}

/* The kind a node's output carries, ANY resolved through its first input. */
static weir_kind stats_out_kind(const cli_stats *st, size_t i, int depth)
{
    const weir_stage_def *d = weir_node_def(st->s[i].node);
    if (d->out_kind != WEIR_KIND_ANY) return d->out_kind;
    if (d->in_kind != WEIR_KIND_ANY && d->in_kind != WEIR_KIND_NONE) return d->in_kind;
    if (st->s[i].nup == 0 || depth > 64) return WEIR_KIND_ANY;
    return stats_out_kind(st, st->s[i].up[0], depth + 1);
}

/* Fraction of the run a stage spent in ns, per replica. */
static double stats_frac(const cli_stats *st, const cli_stage *s, uint64_t ns)
{
    int r = s->st.replicas > 0 ? s->st.replicas : 1;
    if (st->wall_ns == 0) return 0;
    return (double)ns / ((double)st->wall_ns * r);
}

static double rep_frac(const cli_stats *st, uint64_t ns)
{
    return st->wall_ns ? (double)ns / (double)st->wall_ns : 0;
}

/* Rows a stage handled: its input rows, or the rows it made (a source, a
 * parser); bytes: its input, or a source's output. */
static uint64_t stage_rows(const cli_stage *s, const weir_node_stats *t)
{
    return s->in == WEIR_KIND_ROWS ? t->rows_in : t->rows_out;
}
static uint64_t stage_bytes(const cli_stage *s, const weir_node_stats *t)
{
    return s->in == WEIR_KIND_NONE ? t->bytes_out : t->bytes_in;
}
/* Rows per second are meaningful only where rows flow. */
static bool stage_has_rows(const cli_stage *s)
{
    return s->in == WEIR_KIND_ROWS || s->out == WEIR_KIND_ROWS;
}

/* Name the stage that bounds the run; see cli_stats.bn and run_help. */
static void stats_bottleneck(cli_stats *st)
{
    st->bn = -1;
    st->bn_kind = "none";
    if (st->n == 0) return;
    if (!st->timing) {
        snprintf(st->reason, sizeof st->reason, "the run was not timed");
        return;
    }
    size_t c = 0;
    double best = -1, all_busy = 0;
    bool split = false; /* the busiest is c's splitter */
    bool col = false;   /* the busiest is c's collector */
    for (size_t i = 0; i < st->n; i++) {
        double b = stats_frac(st, &st->s[i], st->s[i].st.busy_ns);
        all_busy += (double)st->s[i].st.busy_ns;
        if (b > best) {
            best = b;
            c = i;
            split = col = false;
        }
        if (st->s[i].has_split) {
            b = rep_frac(st, st->s[i].split.busy_ns);
            all_busy += (double)st->s[i].split.busy_ns;
            if (b > best) {
                best = b;
                c = i;
                split = true;
                col = false;
            }
        }
        if (st->s[i].has_col) {
            b = rep_frac(st, st->s[i].col.busy_ns);
            all_busy += (double)st->s[i].col.busy_ns;
            if (b > best) {
                best = b;
                c = i;
                col = true;
                split = false;
            }
        }
    }
    const cli_stage *s = &st->s[c];
    char where[sizeof s->pos + 8] = "";
    if (s->pos[0]) snprintf(where, sizeof where, " (%s)", s->pos);
    if (best < BN_MIN_BUSY) {
        snprintf(st->reason, sizeof st->reason,
                 "no stage is busy for half of the run (the busiest, %s%s%s, is %.0f%% busy): "
                 "the time goes to waiting between stages",
                 s->label, where, split ? "'s splitter" : col ? "'s collector" : "", best * 100);
        snprintf(st->advice, sizeof st->advice,
                 "time a longer run (weir bench), or see where the waits are (--trace)");
        return;
    }
    st->bn = (long)c;
    /* Evidence: the neighbours wait on it. */
    double up_wait = 0, down_wait = 0;
    for (size_t k = 0; k < s->nup; k++) {
        const cli_stage *u = &st->s[s->up[k]];
        double w = stats_frac(st, u, u->st.wait_out_ns);
        if (w > up_wait) up_wait = w;
    }
    if (split) { /* downstream of a splitter: the node's own replicas */
        down_wait = stats_frac(st, s, s->st.wait_in_ns);
    } else if (col) { /* upstream of a collector: the node's own replicas */
        up_wait = stats_frac(st, s, s->st.wait_out_ns);
    } else if (s->has_split) {
        up_wait = rep_frac(st, s->split.wait_out_ns);
    }
    for (size_t k = 0; !split && k < s->ndown; k++) {
        const cli_stage *d = &st->s[s->down[k]];
        double w = stats_frac(st, d, d->st.wait_in_ns);
        if (w > down_wait) down_wait = w;
    }
    char ev[160] = "";
    size_t el = 0;
    if (up_wait >= BN_EVIDENCE)
        el += (size_t)snprintf(ev + el, sizeof ev - el,
                               " while its upstream waits to send (%.0f%% of the time)",
                               up_wait * 100);
    if (down_wait >= BN_EVIDENCE && el < sizeof ev)
        snprintf(ev + el, sizeof ev - el, " %s its downstream waits for input (%.0f%%)",
                 el ? "and" : "while", down_wait * 100);
    int R = s->st.replicas > 0 ? s->st.replicas : 1;
    char busy[64];
    if (col) {
        /* What it does besides passing batches on: a split of every row by
         * key for a keyed consumer, a merge of sorted streams. */
        const char *keyed = NULL;
        for (size_t k = 0; k < s->ndown && !keyed; k++) {
            const cli_stage *d = &st->s[s->down[k]];
            if ((weir_node_def(d->node)->flags & WEIR_STAGE_KEYED) && d->st.replicas > 1)
                keyed = d->label;
        }
        st->bn_kind = "collector";
        snprintf(st->reason, sizeof st->reason,
                 "its collector, which gathers its %d replicas' output on one thread%s%s, is "
                 "%.0f%% busy%s",
                 R, keyed ? " and splits the rows by key for " : "", keyed ? keyed : "",
                 best * 100, (up_wait >= BN_EVIDENCE || down_wait >= BN_EVIDENCE) ? ev : "");
        if (keyed)
            snprintf(st->advice, sizeof st->advice,
                     "the split by key runs on one thread: with few keys, %s(..., workers=1) "
                     "does without it; else select fewer columns before %s",
                     keyed, keyed);
        else
            snprintf(st->advice, sizeof st->advice,
                     "more workers will not help: the collector of %s is serial; give it fewer "
                     "or larger batches",
                     s->label);
        return;
    }
    if (split) {
        st->bn_kind = "splitter";
        snprintf(st->reason, sizeof st->reason,
                 "its splitter, which cuts the input on one thread in front of its %d "
                 "replica%s, is %.0f%% busy%s",
                 R, R == 1 ? "" : "s", best * 100,
                 (up_wait >= BN_EVIDENCE || down_wait >= BN_EVIDENCE) ? ev : "");
        snprintf(st->advice, sizeof st->advice,
                 "more workers will not help: give %s less input, or split the input into "
                 "several files, each with its own chain, and merge() them",
                 s->label);
        return;
    }
    if (R > 1) snprintf(busy, sizeof busy, "%.0f%% busy per replica (%d replicas)", best * 100, R);
    else snprintf(busy, sizeof busy, "%.0f%% busy", best * 100);
    bool saturated = st->wall_ns && st->cpus > 0 &&
                     all_busy / ((double)st->wall_ns * st->cpus) >= BN_SATURATED;

    if (s->in == WEIR_KIND_NONE) {
        st->bn_kind = "input";
        if (strcmp(s->stage, "read") == 0) {
            bool zst = s->st.progress_done > 0 &&
                       (double)s->st.bytes_out > 1.1 * (double)s->st.progress_done;
            snprintf(st->reason, sizeof st->reason, "%s reading%s its input%s", busy,
                     zst ? " and decompressing" : "", ev);
            snprintf(st->advice, sizeof st->advice, "%s",
                     zst ? "input decompression bounds the run (read decompresses on one "
                           "thread): keep the input uncompressed, or split it into several "
                           "files read by separate read() stages and merge()d"
                     : s->st.progress_total == 0
                         ? "input I/O bounds the run: read waits for data (an input of "
                           "unknown size, such as stdin or a pipe: what feeds it is slower)"
                         : "input I/O bounds the run: read from faster storage (a second "
                           "run may read from the page cache)");
        } else if (strcmp(s->stage, "gen") == 0) {
            snprintf(st->reason, sizeof st->reason, "%s generating rows%s", busy, ev);
            snprintf(st->advice, sizeof st->advice,
                     "the generator is slower than the stages after it: to time them, "
                     "write the data once (weir gen) and read() it");
        } else {
            snprintf(st->reason, sizeof st->reason, "%s producing its output%s", busy, ev);
            snprintf(st->advice, sizeof st->advice, "the source %s bounds the run", s->label);
        }
        return;
    }
    if (s->out == WEIR_KIND_NONE) {
        st->bn_kind = "output";
        if (strcmp(s->stage, "write") == 0) {
            snprintf(st->reason, sizeof st->reason, "%s writing its output%s", busy, ev);
            snprintf(st->advice, sizeof st->advice,
                     "writing bounds the run (formatting, compression and I/O happen in "
                     "write, on one thread): write fewer columns, to faster storage, or "
                     "compress in parallel: to_csv() | zstd(workers=N) | write(\"....zst\")");
        } else {
            snprintf(st->reason, sizeof st->reason, "%s consuming its input%s", busy, ev);
            snprintf(st->advice, sizeof st->advice, "the sink %s bounds the run", s->label);
        }
        return;
    }
    st->bn_kind = "stage";
    snprintf(st->reason, sizeof st->reason, "%s%s", busy, ev);
    if (!s->parallel) {
        if (s->in == WEIR_KIND_ROWS)
            snprintf(st->advice, sizeof st->advice,
                     "%s is not parallel-safe (it runs 1 replica): give it fewer rows "
                     "(filter or select before it)",
                     s->label);
        else
            snprintf(st->advice, sizeof st->advice,
                     "%s is not parallel-safe (it runs 1 replica): give it less input, or "
                     "split the input into several files, each with its own chain, and "
                     "merge() them",
                     s->label);
    } else if (saturated) {
        snprintf(st->advice, sizeof st->advice,
                 "all %d CPUs are busy, so more workers will not help: make %s do less, "
                 "or use more cores",
                 st->cpus, s->label);
    } else if (R < st->cpus) {
        snprintf(st->advice, sizeof st->advice,
                 "raise workers (%s runs %d replica%s on %d CPUs: try workers=%d)", s->label,
                 R, R == 1 ? "" : "s", st->cpus, st->cpus);
    } else {
        snprintf(st->advice, sizeof st->advice,
                 "%s already runs a replica per CPU (%d): make it do less, or use more "
                 "cores",
                 s->label, R);
    }
}

int cli_stats_collect(weir_graph *g, uint64_t wall_ns, bool timing, cli_stats *out)
{
    memset(out, 0, sizeof *out);
    out->bn = -1;
    out->bn_kind = "none";
    out->wall_ns = wall_ns;
    out->timing = timing;
    /* The CPUs the run could use: its affinity (taskset, --threads). */
    cpu_set_t set;
    long cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set)
                                                             : sysconf(_SC_NPROCESSORS_ONLN);
    out->cpus = cpus > 0 ? (int)cpus : 1;
    weir_node *const *nodes;
    size_t n = weir_graph_nodes(g, &nodes);
    out->s = calloc(n ? n : 1, sizeof *out->s);
    if (!out->s) return WEIR_ENOMEM;
    out->n = n;
    for (size_t i = 0; i < n; i++) {
        cli_stage *s = &out->s[i];
        s->node = nodes[i];
        s->label = weir_node_label(nodes[i]);
        const weir_stage_def *d = weir_node_def(nodes[i]);
        s->stage = d->name;
        s->parallel = d->flags & WEIR_STAGE_PARALLEL;
        weir_pos p = weir_node_pos(nodes[i]);
        if (p.file) snprintf(s->pos, sizeof s->pos, "%s:%u:%u", p.file, p.line, p.col);
        weir_node_get_stats(nodes[i], &s->st);
        if (s->st.replicas > 0) {
            s->rep = calloc((size_t)s->st.replicas, sizeof *s->rep);
            if (!s->rep) goto nomem;
            s->nrep = s->st.replicas;
            for (int r = 0; r < s->nrep; r++)
                if (weir_node_replica_stats(nodes[i], r, &s->rep[r]) != 0)
                    s->rep[r] = (weir_node_stats){.replicas = 1};
            s->has_split =
                weir_node_replica_stats(nodes[i], WEIR_STATS_SPLITTER, &s->split) == 0;
            s->has_col = weir_node_replica_stats(nodes[i], WEIR_STATS_COLLECTOR, &s->col) == 0;
        }
    }
    for (size_t i = 0; i < n; i++) {
        cli_stage *s = &out->s[i];
        weir_node *const *in;
        size_t nin = weir_node_inputs(s->node, &in);
        s->up = calloc(nin ? nin : 1, sizeof *s->up);
        if (!s->up) goto nomem;
        for (size_t k = 0; k < nin; k++) {
            long j = stats_index(out, in[k]);
            if (j < 0) continue;
            s->up[s->nup++] = (size_t)j;
            cli_stage *u = &out->s[j];
            size_t *nd = realloc(u->down, (u->ndown + 1) * sizeof *nd);
            if (!nd) goto nomem;
            u->down = nd;
            u->down[u->ndown++] = i;
        }
    }
    for (size_t i = 0; i < n; i++) out->s[i].out = stats_out_kind(out, i, 0);
    for (size_t i = 0; i < n; i++) {
        cli_stage *s = &out->s[i];
        const weir_stage_def *d = weir_node_def(s->node);
        s->in = d->in_kind == WEIR_KIND_ANY && s->nup ? out->s[s->up[0]].out : d->in_kind;
    }
    stats_bottleneck(out);
    return 0;
nomem:
    cli_stats_free(out);
    return WEIR_ENOMEM;
}

void cli_stats_free(cli_stats *st)
{
    for (size_t i = 0; st->s && i < st->n; i++) {
        free(st->s[i].rep);
        free(st->s[i].up);
        free(st->s[i].down);
    }
    free(st->s);
    st->s = NULL;
    st->n = 0;
}

uint64_t cli_stats_input_bytes(const cli_stats *st)
{
    uint64_t b = 0;
    for (size_t i = 0; i < st->n; i++) {
        const cli_stage *s = &st->s[i];
        if (s->in != WEIR_KIND_NONE) continue;
        b += s->st.progress_total || s->st.progress_done ? s->st.progress_done : s->st.bytes_out;
    }
    return b;
}

uint64_t cli_stats_rows(const cli_stats *st)
{
    uint64_t r = 0;
    for (size_t i = 0; i < st->n; i++) {
        const cli_stage *s = &st->s[i];
        if (s->out == WEIR_KIND_ROWS && s->in != WEIR_KIND_ROWS) r += s->st.rows_out;
    }
    return r;
}

/* ---- the table ------------------------------------------------------------------- */

static void cell_u64(char *b, size_t n, bool applies, uint64_t v)
{
    if (applies) snprintf(b, n, "%llu", (unsigned long long)v);
    else snprintf(b, n, "-");
}
static void cell_mb(char *b, size_t n, bool applies, uint64_t v)
{
    if (applies) snprintf(b, n, "%.1f", (double)v / 1e6);
    else snprintf(b, n, "-");
}
static void cell_pct(char *b, size_t n, bool applies, double f)
{
    if (applies) snprintf(b, n, "%.0f%%", f * 100);
    else snprintf(b, n, "-");
}

static void table_row(FILE *f, const cli_stats *st, const cli_stage *s, const char *name,
                      int width, const char *repl, const weir_node_stats *t,
                      double (*frac)(const cli_stats *, const cli_stage *, uint64_t))
{
    bool src = s->in == WEIR_KIND_NONE, sink = s->out == WEIR_KIND_NONE;
    bool rin = s->in == WEIR_KIND_ROWS, rout = s->out == WEIR_KIND_ROWS;
    char ri[24], ro[24], mi[24], mo[24], bu[16], wi[16], wo[16], rs[24], ms[24];
    cell_u64(ri, sizeof ri, rin, t->rows_in);
    cell_u64(ro, sizeof ro, rout, t->rows_out);
    cell_mb(mi, sizeof mi, !src, t->bytes_in);
    cell_mb(mo, sizeof mo, !sink, t->bytes_out);
    cell_pct(bu, sizeof bu, st->timing, frac(st, s, t->busy_ns));
    cell_pct(wi, sizeof wi, st->timing && !src, frac(st, s, t->wait_in_ns));
    cell_pct(wo, sizeof wo, st->timing && !sink, frac(st, s, t->wait_out_ns));
    double secs = (double)st->wall_ns / 1e9;
    if (stage_has_rows(s) && secs > 0) cli_fmt_count(rs, sizeof rs, (double)stage_rows(s, t) / secs);
    else snprintf(rs, sizeof rs, "-");
    if (secs > 0) snprintf(ms, sizeof ms, "%.1f", (double)stage_bytes(s, t) / 1e6 / secs);
    else snprintf(ms, sizeof ms, "-");
    fprintf(f, "%-*s %4s %11s %11s %9s %9s %5s %7s %8s %10s %8s\n", width, name, repl, ri, ro,
            mi, mo, bu, wi, wo, rs, ms);
}

/* Per-replica rows divide by the wall time alone. */
static double table_rep_frac(const cli_stats *st, const cli_stage *s, uint64_t ns)
{
    (void)s;
    return rep_frac(st, ns);
}

void cli_stats_table(FILE *f, const cli_stats *st, bool replicas)
{
    int width = 5;
    char name[256];
    for (size_t i = 0; i < st->n; i++) {
        const cli_stage *s = &st->s[i];
        int w = s->pos[0] ? snprintf(name, sizeof name, "%s (%s)", s->label, s->pos)
                          : (int)strlen(s->label);
        if (w > width) width = w;
    }
    if (width > 48) width = 48;
    fprintf(f, "%-*s %4s %11s %11s %9s %9s %5s %7s %8s %10s %8s\n", width, "stage", "repl",
            "rows in", "rows out", "MB in", "MB out", "busy", "wait in", "wait out", "rows/s",
            "MB/s");
    for (size_t i = 0; i < st->n; i++) {
        const cli_stage *s = &st->s[i];
        if (s->pos[0]) snprintf(name, sizeof name, "%s (%s)", s->label, s->pos);
        else snprintf(name, sizeof name, "%s", s->label);
        char repl[16];
        snprintf(repl, sizeof repl, "%d", s->st.replicas);
        table_row(f, st, s, name, width, repl, &s->st, stats_frac);
        if (s->has_split) {
            cli_stage sp = *s; /* the splitter passes bytes on */
            sp.out = WEIR_KIND_BYTES;
            table_row(f, st, &sp, "  split", width, "1", &s->split, table_rep_frac);
        }
        if (s->has_col) {
            cli_stage cs = *s; /* the collector passes the stage's output on */
            cs.in = s->out;
            table_row(f, st, &cs, "  collect", width, "1", &s->col, table_rep_frac);
        }
        if (!replicas || s->nrep < 2) continue;
        for (int r = 0; r < s->nrep; r++) {
            snprintf(name, sizeof name, "  #%d", r);
            table_row(f, st, s, name, width, "", &s->rep[r], table_rep_frac);
        }
    }
    char wall[32];
    cli_fmt_secs(wall, sizeof wall, (double)st->wall_ns / 1e9);
    fprintf(f, "wall time %s on %d CPU%s; busy and wait: %% of wall time per replica; "
               "MB = 10^6 bytes\n",
            wall, st->cpus, st->cpus == 1 ? "" : "s");
    if (st->bn >= 0) {
        const cli_stage *s = &st->s[st->bn];
        fprintf(f, "bottleneck: %s", s->label);
        if (s->pos[0]) fprintf(f, " (%s)", s->pos);
        fprintf(f, ": %s -- %s\n", st->reason, st->advice);
    } else if (st->reason[0]) {
        fprintf(f, "bottleneck: none: %s%s%s\n", st->reason, st->advice[0] ? " -- " : "",
                st->advice);
    }
}

/* ---- JSON ------------------------------------------------------------------------------ */

static void json_counts(FILE *f, const cli_stats *st, const cli_stage *s,
                        const weir_node_stats *t, double denom_replicas)
{
    double wall = (double)st->wall_ns;
    double d = wall * denom_replicas;
    double secs = wall / 1e9;
    fprintf(f,
            "\"batches_in\":%llu,\"batches_out\":%llu,\"rows_in\":%llu,\"rows_out\":%llu,"
            "\"bytes_in\":%llu,\"bytes_out\":%llu,\"busy_ns\":%llu,\"wait_in_ns\":%llu,"
            "\"wait_out_ns\":%llu,",
            (unsigned long long)t->batches_in, (unsigned long long)t->batches_out,
            (unsigned long long)t->rows_in, (unsigned long long)t->rows_out,
            (unsigned long long)t->bytes_in, (unsigned long long)t->bytes_out,
            (unsigned long long)t->busy_ns, (unsigned long long)t->wait_in_ns,
            (unsigned long long)t->wait_out_ns);
    fprintf(f, "\"busy_pct\":%.2f,\"wait_in_pct\":%.2f,\"wait_out_pct\":%.2f,",
            d > 0 ? (double)t->busy_ns / d * 100 : 0.0,
            d > 0 ? (double)t->wait_in_ns / d * 100 : 0.0,
            d > 0 ? (double)t->wait_out_ns / d * 100 : 0.0);
    fprintf(f, "\"rows_per_s\":%.1f,\"mb_per_s\":%.3f,\"progress_done\":%llu,"
               "\"progress_total\":%llu",
            secs > 0 ? (double)stage_rows(s, t) / secs : 0.0,
            secs > 0 ? (double)stage_bytes(s, t) / 1e6 / secs : 0.0,
            (unsigned long long)t->progress_done, (unsigned long long)t->progress_total);
}

void cli_stats_json(FILE *f, const cli_stats *st, const char *status, const char *error)
{
    fprintf(f, "{\"weir_stats\":1,\"version\":");
    cli_json_str(f, weir_version_string());
    fprintf(f, ",\"status\":");
    cli_json_str(f, status);
    fprintf(f, ",\"error\":");
    if (error) cli_json_str(f, error);
    else fputs("null", f);
    fprintf(f, ",\"wall_ns\":%llu,\"cpus\":%d,\"timing\":%s,\"input_bytes\":%llu,\"rows\":%llu,"
               "\"stages\":[",
            (unsigned long long)st->wall_ns, st->cpus, st->timing ? "true" : "false",
            (unsigned long long)cli_stats_input_bytes(st),
            (unsigned long long)cli_stats_rows(st));
    for (size_t i = 0; i < st->n; i++) {
        const cli_stage *s = &st->s[i];
        fprintf(f, "%s{\"index\":%zu,\"label\":", i ? "," : "", i);
        cli_json_str(f, s->label);
        fprintf(f, ",\"stage\":");
        cli_json_str(f, s->stage);
        fprintf(f, ",\"pos\":");
        if (s->pos[0]) cli_json_str(f, s->pos);
        else fputs("null", f);
        fprintf(f, ",\"in\":\"%s\",\"out\":\"%s\",\"parallel\":%s,\"replicas\":%d,"
                   "\"inputs\":[",
                weir_kind_name(s->in), weir_kind_name(s->out), s->parallel ? "true" : "false",
                s->st.replicas);
        for (size_t k = 0; k < s->nup; k++) fprintf(f, "%s%zu", k ? "," : "", s->up[k]);
        fprintf(f, "],");
        json_counts(f, st, s, &s->st, s->st.replicas > 0 ? s->st.replicas : 1);
        fprintf(f, ",\"splitter\":");
        if (s->has_split) {
            fputc('{', f);
            json_counts(f, st, s, &s->split, 1);
            fputc('}', f);
        } else {
            fputs("null", f);
        }
        fprintf(f, ",\"collector\":");
        if (s->has_col) {
            fputc('{', f);
            json_counts(f, st, s, &s->col, 1);
            fputc('}', f);
        } else {
            fputs("null", f);
        }
        fprintf(f, ",\"per_replica\":[");
        for (int r = 0; r < s->nrep; r++) {
            fprintf(f, "%s{\"replica\":%d,", r ? "," : "", r);
            json_counts(f, st, s, &s->rep[r], 1);
            fprintf(f, "}");
        }
        fprintf(f, "]}");
    }
    fprintf(f, "],\"bottleneck\":{\"kind\":\"%s\",\"index\":", st->bn_kind);
    if (st->bn >= 0) {
        const cli_stage *s = &st->s[st->bn];
        fprintf(f, "%ld,\"label\":", st->bn);
        cli_json_str(f, s->label);
        fprintf(f, ",\"stage\":");
        cli_json_str(f, s->stage);
        fprintf(f, ",\"pos\":");
        if (s->pos[0]) cli_json_str(f, s->pos);
        else fputs("null", f);
        fprintf(f, ",\"busy_pct\":%.2f", stats_frac(st, s, s->st.busy_ns) * 100);
    } else {
        fprintf(f, "null,\"label\":null,\"stage\":null,\"pos\":null,\"busy_pct\":null");
    }
    fprintf(f, ",\"reason\":");
    cli_json_str(f, st->reason);
    fprintf(f, ",\"advice\":");
    cli_json_str(f, st->advice);
    fprintf(f, "}}");
}
