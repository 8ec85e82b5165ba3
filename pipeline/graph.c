/*
 * graph.c — the logical graph: nodes, arguments, edges, validation.
 * The physical expansion and the run live in run.c.
 */
#include "graph.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void weir__graph_errorf(weir_graph *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    weir__vfmt(g->errmsg, sizeof g->errmsg, fmt, ap);
    va_end(ap);
}

const char *weir_graph_errmsg(const weir_graph *g) { return g->errmsg; }

const char *weir_arg_type_name(weir_arg_type t)
{
    switch (t) {
    case WEIR_ARG_INT: return "int";
    case WEIR_ARG_FLOAT: return "float";
    case WEIR_ARG_BOOL: return "bool";
    case WEIR_ARG_STRING: return "string";
    case WEIR_ARG_LIST: return "list";
    case WEIR_ARG_EXPR: return "expr";
    case WEIR_ARG_COLUMNS: return "columns";
    case WEIR_ARG_NAMED: return "named";
    }
    return "?";
}

int weir_graph_create(weir_graph **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out) return WEIR_ENOMEM;
    pthread_mutex_init(&(*out)->live_mu, NULL);
    return 0;
}

void weir__graph_free_trace(weir_graph *g)
{
    for (size_t i = 0; i < g->ntracks; i++) free(g->tracks[i].spans);
    free(g->tracks);
    g->tracks = NULL;
    g->ntracks = 0;
}

size_t weir_graph_nodes(const weir_graph *g, weir_node *const **nodes)
{
    *nodes = g->nodes;
    return g->nnodes;
}

size_t weir_node_inputs(const weir_node *n, weir_node *const **inputs)
{
    *inputs = n->inputs;
    return n->ninputs;
}

weir_pos weir_node_pos(const weir_node *n) { return n->pos; }

static void arg_clear(weir__arg *a)
{
    free(a->s);
    a->s = NULL;
    for (size_t i = 0; i < a->nlist; i++) free(a->list[i]);
    free(a->list);
    a->list = NULL;
    a->nlist = 0;
    weir_expr_destroy(a->expr);
    a->expr = NULL;
    for (size_t i = 0; i < a->nnamed; i++) {
        free(a->names[i]);
        weir_expr_destroy(a->exprs[i]);
    }
    free(a->names);
    free(a->exprs);
    a->names = NULL;
    a->exprs = NULL;
    a->nnamed = 0;
}

static void node_free(weir_node *n)
{
    for (size_t i = 0; i < n->nargs; i++) arg_clear(&n->args[i]);
    free(n->args);
    for (size_t i = 0; i < n->npart; i++) free(n->part[i]);
    free(n->part);
    free(n->inputs);
    free(n->outputs);
    free(n->label);
    weir_schema_release(n->schema);
    free(n->rstats);
    free(n->reads);
    free(n);
}

void weir_graph_destroy(weir_graph *g)
{
    if (!g) return;
    for (size_t i = 0; i < g->nnodes; i++) node_free(g->nodes[i]);
    free(g->nodes);
    for (size_t i = 0; i < g->nstrings; i++) free(g->strings[i]);
    free(g->strings);
    weir__graph_free_trace(g);
    pthread_mutex_destroy(&g->live_mu);
    free(g);
}

const char *weir__graph_strdup(weir_graph *g, const char *s)
{
    char **ns = realloc(g->strings, (g->nstrings + 1) * sizeof *ns);
    if (!ns) return NULL;
    g->strings = ns;
    if (!(ns[g->nstrings] = strdup(s))) return NULL;
    return ns[g->nstrings++];
}

/* Parse a default given as text into a; used once per node at add time. */
static int arg_parse_default(weir__arg *a, const weir_arg_def *d)
{
    a->def = d;
    if (!d->def) return 0;
    switch (d->type) {
    case WEIR_ARG_INT: a->i = strtoll(d->def, NULL, 0); break;
    case WEIR_ARG_FLOAT: a->f = strtod(d->def, NULL); break;
    case WEIR_ARG_BOOL: a->b = strcmp(d->def, "true") == 0 || strcmp(d->def, "1") == 0; break;
    case WEIR_ARG_STRING:
        a->s = strdup(d->def);
        if (!a->s) return WEIR_ENOMEM;
        break;
    case WEIR_ARG_EXPR: {
        char err[256];
        int rc = weir_expr_parse(&a->expr, d->def, "<default>", err, sizeof err);
        if (rc) return rc;
        break;
    }
    case WEIR_ARG_NAMED:
        break;
    case WEIR_ARG_COLUMNS:
    case WEIR_ARG_LIST:
        /* A default list is comma-separated ("" is the empty list). */
        for (const char *p = d->def; *p;) {
            const char *e = strchr(p, ',');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            char **nl = realloc(a->list, (a->nlist + 1) * sizeof *nl);
            if (!nl) return WEIR_ENOMEM;
            a->list = nl;
            if (!(a->list[a->nlist] = strndup(p, len))) return WEIR_ENOMEM;
            a->nlist++;
            p += len + (e ? 1 : 0);
        }
        break;
    }
    a->set = true;
    return 0;
}

int weir_graph_add(weir_graph *g, const weir_stage_def *def, const char *label,
                   weir_node **out)
{
    *out = NULL;
    if (!def || def->abi != WEIR_ABI_VERSION) {
        weir__graph_errorf(g, "stage '%s' was built for stage ABI %u, this weir has %u",
                           def && def->name ? def->name : "?", def ? def->abi : 0,
                           WEIR_ABI_VERSION);
        return WEIR_EINVAL;
    }
    if (!def->name || !def->process) {
        weir__graph_errorf(g, "stage definition without a name or a process callback");
        return WEIR_EINVAL;
    }
    if (g->nnodes == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 16;
        weir_node **nn = realloc(g->nodes, cap * sizeof *nn);
        if (!nn) return WEIR_ENOMEM;
        g->nodes = nn;
        g->cap = cap;
    }
    weir_node *n = calloc(1, sizeof *n);
    if (!n) return WEIR_ENOMEM;
    n->g = g;
    n->def = def;
    n->id = (int)g->nnodes;
    n->ordered = true;
    n->label = strdup(label ? label : def->name);
    size_t na = 0;
    while (def->args && def->args[na].name) na++;
    n->nargs = na;
    n->args = calloc(na ? na : 1, sizeof *n->args);
    if (!n->label || !n->args) goto oom;
    for (size_t i = 0; i < na; i++) {
        n->args[i].def = &def->args[i];
        /* Variadic arguments are optional: absent means empty. */
        if (def->args[i].type == WEIR_ARG_NAMED || def->args[i].type == WEIR_ARG_COLUMNS)
            n->args[i].set = true;
        if (arg_parse_default(&n->args[i], &def->args[i])) goto oom;
    }
    g->nodes[g->nnodes++] = n;
    *out = n;
    return 0;
oom:
    node_free(n);
    return WEIR_ENOMEM;
}

static weir__arg *node_arg(weir_node *n, const char *name)
{
    for (size_t i = 0; i < n->nargs; i++)
        if (strcmp(n->args[i].def->name, name) == 0) return &n->args[i];
    return NULL;
}

/* Find a user-settable argument and check its type; on failure, say why. */
static int arg_for_set(weir_node *n, const char *name, weir_arg_type t,
                       weir__arg **out)
{
    weir__arg *a = node_arg(n, name);
    if (!a) {
        weir__graph_errorf(n->g, "stage '%s' has no argument '%s'", n->label, name);
        return WEIR_ENOTFOUND;
    }
    bool ok = a->def->type == t || (a->def->type == WEIR_ARG_FLOAT && t == WEIR_ARG_INT) ||
              (a->def->type == WEIR_ARG_COLUMNS && t == WEIR_ARG_LIST);
    if (!ok) {
        weir__graph_errorf(n->g, "stage '%s': argument '%s' must be %s, not %s",
                           n->label, name, weir_arg_type_name(a->def->type),
                           weir_arg_type_name(t));
        return WEIR_EINVAL;
    }
    *out = a;
    return 0;
}

int weir_node_set_int(weir_node *n, const char *arg, int64_t v)
{
    if (strcmp(arg, "mem") == 0 && !node_arg(n, "mem")) {
        if (v < 1) {
            weir__graph_errorf(n->g, "stage '%s': mem must be a positive size", n->label);
            return WEIR_EINVAL;
        }
        n->mem = v;
        return 0;
    }
    if (strcmp(arg, "workers") == 0) {
        if (v < 1 || v > 4096) {
            weir__graph_errorf(n->g, "stage '%s': workers must be 1..4096, not %lld",
                               n->label, (long long)v);
            return WEIR_EINVAL;
        }
        if (v > 1 && !(n->def->flags & WEIR_STAGE_PARALLEL)) {
            weir__graph_errorf(n->g, "stage '%s' cannot run in parallel (workers=%lld)",
                               n->label, (long long)v);
            return WEIR_EINVAL;
        }
        n->workers = (int)v;
        return 0;
    }
    weir__arg *a;
    WEIR__TRY(arg_for_set(n, arg, WEIR_ARG_INT, &a));
    if (a->def->type == WEIR_ARG_FLOAT) a->f = (double)v;
    else a->i = v;
    a->set = a->given = true;
    return 0;
}

int weir_node_set_float(weir_node *n, const char *arg, double v)
{
    weir__arg *a;
    WEIR__TRY(arg_for_set(n, arg, WEIR_ARG_FLOAT, &a));
    a->f = v;
    a->set = a->given = true;
    return 0;
}

int weir_node_set_bool(weir_node *n, const char *arg, bool v)
{
    if (strcmp(arg, "ordered") == 0) {
        n->ordered = v;
        return 0;
    }
    weir__arg *a;
    WEIR__TRY(arg_for_set(n, arg, WEIR_ARG_BOOL, &a));
    a->b = v;
    a->set = a->given = true;
    return 0;
}

int weir_node_set_str(weir_node *n, const char *arg, const char *v)
{
    weir__arg *a;
    WEIR__TRY(arg_for_set(n, arg, WEIR_ARG_STRING, &a));
    char *s = strdup(v);
    if (!s) return WEIR_ENOMEM;
    free(a->s);
    a->s = s;
    a->set = a->given = true;
    return 0;
}

static int strv_dup(char ***out, const char *const *items, size_t count)
{
    char **v = calloc(count ? count : 1, sizeof *v);
    if (!v) return WEIR_ENOMEM;
    for (size_t i = 0; i < count; i++) {
        if (!(v[i] = strdup(items[i]))) {
            while (i--) free(v[i]);
            free(v);
            return WEIR_ENOMEM;
        }
    }
    *out = v;
    return 0;
}

int weir_node_set_list(weir_node *n, const char *arg, const char *const *items,
                       size_t count)
{
    weir__arg *a;
    WEIR__TRY(arg_for_set(n, arg, WEIR_ARG_LIST, &a));
    char **v;
    WEIR__TRY(strv_dup(&v, items, count));
    arg_clear(a);
    a->list = v;
    a->nlist = count;
    a->set = a->given = true;
    return 0;
}

int weir_node_set_expr(weir_node *n, const char *arg, const weir_expr *e)
{
    weir__arg *a;
    WEIR__TRY(arg_for_set(n, arg, WEIR_ARG_EXPR, &a));
    weir_expr *copy = weir_expr_clone(e);
    if (!copy) return WEIR_ENOMEM;
    weir_expr_destroy(a->expr);
    a->expr = copy;
    a->set = a->given = true;
    return 0;
}

int weir_node_add_named(weir_node *n, const char *name, const weir_expr *e)
{
    weir__arg *a = NULL;
    for (size_t i = 0; i < n->nargs && !a; i++)
        if (n->args[i].def->type == WEIR_ARG_NAMED) a = &n->args[i];
    if (!a) {
        weir__graph_errorf(n->g, "stage '%s' has no argument '%s'", n->label, name);
        return WEIR_ENOTFOUND;
    }
    for (size_t i = 0; i < a->nnamed; i++) {
        if (strcmp(a->names[i], name) == 0) {
            weir__graph_errorf(n->g, "stage '%s': '%s' is given twice", n->label, name);
            return WEIR_EINVAL;
        }
    }
    char **nn = realloc(a->names, (a->nnamed + 1) * sizeof *nn);
    if (!nn) return WEIR_ENOMEM;
    a->names = nn;
    weir_expr **ne = realloc(a->exprs, (a->nnamed + 1) * sizeof *ne);
    if (!ne) return WEIR_ENOMEM;
    a->exprs = ne;
    char *dup = strdup(name);
    weir_expr *copy = weir_expr_clone(e);
    if (!dup || !copy) {
        free(dup);
        weir_expr_destroy(copy);
        return WEIR_ENOMEM;
    }
    a->names[a->nnamed] = dup;
    a->exprs[a->nnamed] = copy;
    a->nnamed++;
    a->set = a->given = true;
    return 0;
}

void weir_node_set_pos(weir_node *n, weir_pos pos) { n->pos = pos; }
const weir_schema *weir_node_schema(const weir_node *n) { return n->schema; }
const char *weir_node_label(const weir_node *n) { return n->label; }
const weir_stage_def *weir_node_def(const weir_node *n) { return n->def; }

int weir_node_partition(weir_node *n, const char *const *cols, size_t count)
{
    if (count == 0) {
        weir__graph_errorf(n->g, "stage '%s': partition needs at least one column",
                           n->label);
        return WEIR_EINVAL;
    }
    char **v;
    WEIR__TRY(strv_dup(&v, cols, count));
    for (size_t i = 0; i < n->npart; i++) free(n->part[i]);
    free(n->part);
    n->part = v;
    n->npart = count;
    return 0;
}

static int push_node(weir_node ***v, size_t *n, weir_node *x)
{
    weir_node **nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (!nv) return WEIR_ENOMEM;
    nv[(*n)++] = x;
    *v = nv;
    return 0;
}

int weir_graph_connect(weir_graph *g, weir_node *from, weir_node *to)
{
    if (from == to) {
        weir__graph_errorf(g, "stage '%s' cannot feed itself", from->label);
        return WEIR_EINVAL;
    }
    if (from->def->out_kind == WEIR_KIND_NONE) {
        weir__graph_errorf(g, "stage '%s' is a sink: it has no output to connect",
                           from->label);
        return WEIR_EINVAL;
    }
    if (to->def->in_kind == WEIR_KIND_NONE) {
        weir__graph_errorf(g, "stage '%s' is a source: it takes no input", to->label);
        return WEIR_EINVAL;
    }
    if (to->ninputs > 0 && !(to->def->flags & WEIR_STAGE_MULTI_IN)) {
        weir__graph_errorf(g, "stage '%s' takes one input; use merge() or concat() "
                           "to join streams", to->label);
        return WEIR_EINVAL;
    }
    /* Kinds are checked where both are known; ANY is resolved at run. */
    weir_kind out = from->def->out_kind, in = to->def->in_kind;
    if (out != WEIR_KIND_ANY && in != WEIR_KIND_ANY && out != in) {
        weir__graph_errorf(g, "stage '%s' produces %s but '%s' expects %s",
                           from->label, weir_kind_name(out), to->label,
                           weir_kind_name(in));
        return WEIR_EINVAL;
    }
    WEIR__TRY(push_node(&from->outputs, &from->noutputs, to));
    int rc = push_node(&to->inputs, &to->ninputs, from);
    if (rc) from->noutputs--;
    return rc;
}

/* ---- validation --------------------------------------------------------------------- */

/* Mark n and everything upstream of it with mark in seen[]. */
static void mark_upstream(const weir_node *n, unsigned char *seen, unsigned char mark)
{
    if (seen[n->id] & mark) return;
    seen[n->id] |= mark;
    for (size_t k = 0; k < n->ninputs; k++) mark_upstream(n->inputs[k], seen, mark);
}

/* A node feeding two different inputs of x (a diamond), or NULL. A fan-in
 * that reads its inputs one after another cannot drain such a source:
 * bounded channels on the later branch fill, and the source blocks. */
static const weir_node *shared_ancestor(const weir_graph *g, const weir_node *x)
{
    unsigned char *seen = calloc(g->nnodes, 1);
    const weir_node *found = NULL;
    if (!seen) return NULL;
    for (size_t k = 0; k < x->ninputs; k++) {
        unsigned char *mine = calloc(g->nnodes, 1);
        if (!mine) break;
        mark_upstream(x->inputs[k], mine, 1);
        /* The nearest shared node is the one added last (ids grow). */
        for (size_t i = 0; i < g->nnodes; i++) {
            if (mine[i] && seen[i]) found = g->nodes[i];
            seen[i] |= mine[i];
        }
        free(mine);
    }
    free(seen);
    return found;
}

/* "file:line:col: " for a node placed by a spec, else "". */
static const char *where(const weir_node *n, char *buf, size_t size)
{
    if (!n->pos.file) return "";
    snprintf(buf, size, "%s:%u:%u: ", n->pos.file, n->pos.line, n->pos.col);
    return buf;
}

int weir_graph_check(weir_graph *g, const weir_run_opts *opts)
{
    weir_run_opts defaults = {0};
    weir_node **order;
    g->errmsg[0] = '\0';
    int rc = weir__graph_validate(g, opts ? opts : &defaults, &order);
    if (rc == 0) free(order);
    return rc;
}

int weir_stage_reads(weir_stage *s, const char *const *cols, size_t n)
{
    if (s->r || !s->node || (n && !cols)) return WEIR_EINVAL; /* plan time only */
    weir_node *x = s->node;
    const char **names = n ? calloc(n, sizeof *names) : NULL;
    if (n && !names) return WEIR_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (!cols[i]) {
            free(names);
            return WEIR_EINVAL;
        }
        if (!(names[i] = weir__graph_strdup(x->g, cols[i]))) {
            free(names);
            return WEIR_ENOMEM;
        }
    }
    free(x->reads);
    x->reads = names;
    x->nreads = n;
    x->has_reads = true;
    return 0;
}

void weir__plan_stage_init(weir_stage *s, weir_node *n)
{
    *s = (weir_stage){.node = n, .nreplicas = n->replicas > 0 ? n->replicas : 1};
}

int weir__graph_validate(weir_graph *g, const weir_run_opts *o, weir_node ***order_out)
{
    size_t n = g->nnodes;
    *order_out = NULL;
    g->errmsg[0] = '\0';
    if (n == 0) {
        weir__graph_errorf(g, "the graph has no stages");
        return WEIR_ESPEC;
    }
    weir_node **order = malloc(n * sizeof *order);
    size_t *indeg = calloc(n, sizeof *indeg);
    if (!order || !indeg) {
        free(order);
        free(indeg);
        return WEIR_ENOMEM;
    }
    /* Kahn's algorithm: a topological order, or a cycle. */
    size_t head = 0, tail = 0;
    for (size_t i = 0; i < n; i++) {
        indeg[i] = g->nodes[i]->ninputs;
        if (indeg[i] == 0) order[tail++] = g->nodes[i];
    }
    while (head < tail) {
        weir_node *x = order[head++];
        for (size_t k = 0; k < x->noutputs; k++)
            if (--indeg[x->outputs[k]->id] == 0) order[tail++] = x->outputs[k];
    }
    free(indeg);
    int rc = WEIR_ESPEC;
    if (tail != n) {
        weir__graph_errorf(g, "the graph has a cycle");
        goto fail;
    }
    int maxw = o->max_workers > 0 ? o->max_workers : weir__ncpus();
    for (size_t i = 0; i < n; i++) {
        weir_node *x = order[i];
        const weir_stage_def *d = x->def;
        char wbuf[256];
        const char *W = where(x, wbuf, sizeof wbuf);
        if (d->in_kind != WEIR_KIND_NONE && x->ninputs == 0) {
            weir__graph_errorf(g, "%sstage '%s' has no input", W, x->label);
            goto fail;
        }
        if (d->out_kind != WEIR_KIND_NONE && x->noutputs == 0) {
            weir__graph_errorf(g, "%soutput of '%s' is never used", W, x->label);
            goto fail;
        }
        /* Resolve kinds in topological order. */
        weir_kind in = WEIR_KIND_NONE;
        for (size_t k = 0; k < x->ninputs; k++) {
            weir_kind up = x->inputs[k]->out_kind;
            if (k > 0 && up != in) {
                weir__graph_errorf(g, "%sstage '%s' joins %s with %s", W, x->label,
                                   weir_kind_name(in), weir_kind_name(up));
                goto fail;
            }
            in = up;
        }
        if (d->in_kind != WEIR_KIND_NONE && d->in_kind != WEIR_KIND_ANY &&
            in != d->in_kind) {
            weir__graph_errorf(g, "%sstage '%s' expects %s but gets %s", W, x->label,
                               weir_kind_name(d->in_kind), weir_kind_name(in));
            goto fail;
        }
        x->in_kind = in;
        x->out_kind = d->out_kind == WEIR_KIND_ANY ? in : d->out_kind;
        if (d->out_kind == WEIR_KIND_ANY && in == WEIR_KIND_NONE) {
            weir__graph_errorf(g, "%sstage '%s' cannot tell what it produces", W, x->label);
            goto fail;
        }
        /* Required arguments. */
        for (size_t k = 0; k < x->nargs; k++) {
            if (!x->args[k].set) {
                weir__graph_errorf(g, "%sstage '%s' needs argument '%s'", W, x->label,
                                   x->args[k].def->name);
                goto fail;
            }
        }
        /* Replicas. */
        int w = x->workers;
        bool parallel = d->flags & WEIR_STAGE_PARALLEL;
        if (w == 0) w = parallel ? maxw : 1;
        if (w > 1 && (d->flags & WEIR_STAGE_MULTI_IN)) w = 1;
        if (x->auto_part) { /* from an earlier validation: recompute */
            for (size_t k = 0; k < x->npart; k++) free(x->part[k]);
            free(x->part);
            x->part = NULL;
            x->npart = 0;
            x->auto_part = false;
        }
        if (w > 1 && (d->flags & WEIR_STAGE_KEYED) && x->npart == 0 && d->partition_arg) {
            const weir__arg *pa = NULL;
            for (size_t k = 0; k < x->nargs; k++)
                if (strcmp(x->args[k].def->name, d->partition_arg) == 0) pa = &x->args[k];
            if (pa && pa->nlist) {
                rc = weir_node_partition(x, (const char *const *)pa->list, pa->nlist);
                if (rc) goto fail;
                rc = WEIR_ESPEC;
                x->auto_part = true;
            }
        }
        if (w > 1 && (d->flags & WEIR_STAGE_KEYED) && x->npart == 0) {
            if (x->workers > 1) {
                weir__graph_errorf(g, "%sstage '%s' needs a partition key to run "
                                   "with workers=%d", W, x->label, x->workers);
                goto fail;
            }
            w = 1;
        }
        if (x->npart && x->in_kind != WEIR_KIND_ROWS) {
            weir__graph_errorf(g, "%sstage '%s': only rows can be partitioned by key", W,
                               x->label);
            goto fail;
        }
        x->replicas = w;
        x->mem_budget = x->mem > 0 ? (size_t)x->mem
                                   : (o->mem_budget ? o->mem_budget : (size_t)1 << 30);
        x->tmpdir = o->tmpdir ? o->tmpdir : getenv("TMPDIR");
        if (!x->tmpdir || !x->tmpdir[0]) x->tmpdir = "/tmp";
        if (w > 1 && (d->flags & WEIR_STAGE_SORTED_OUT) && !d->compare) {
            weir__graph_errorf(g, "%sstage '%s' says its output is sorted but gives no "
                               "compare callback", W, x->label);
            goto fail;
        }
        if (!x->ordered && (d->flags & WEIR_STAGE_KEEP_ORDER) && w > 1) {
            weir__graph_errorf(g, "%sstage '%s' must keep its input's order: "
                               "ordered=false is not allowed", W, x->label);
            goto fail;
        }
        if ((d->flags & WEIR_STAGE_SEQ_IN) && x->ninputs > 1) {
            const weir_node *common = shared_ancestor(g, x);
            if (common) {
                weir__graph_errorf(g, "%sstage '%s': two of its inputs come from '%s', so "
                                   "it would wait for the second input while '%s' "
                                   "waits for the first to drain (a deadlock): use "
                                   "merge(), or read the source once per input",
                                   W, x->label, common->label, common->label);
                goto fail;
            }
        }
        /* Schemas: what the stage will produce, checked before anything
         * runs. All inputs of a fan-in must agree. */
        weir_schema *in_schema = x->ninputs ? x->inputs[0]->schema : NULL;
        for (size_t k = 1; k < x->ninputs; k++) {
            weir_schema *other = x->inputs[k]->schema;
            if (in_schema && other && !weir_schema_equal(in_schema, other)) {
                weir__graph_errorf(g, "%sstage '%s': inputs have different columns "
                                   "('%s' and '%s')", W, x->label, x->inputs[0]->label,
                                   x->inputs[k]->label);
                goto fail;
            }
            if (!other) in_schema = NULL;
        }
        weir_schema_release(x->schema);
        x->schema = NULL;
        free(x->reads);
        x->reads = NULL;
        x->nreads = 0;
        x->has_reads = false;
        if (d->plan) {
            weir_stage ps;
            weir__plan_stage_init(&ps, x);
            int prc = d->plan(&ps, in_schema, &x->schema);
            if (prc < 0) {
                if (!g->errmsg[0])
                    weir__graph_errorf(g, "%sstage '%s': %s", W, x->label, weir_strerror(prc));
                rc = prc == WEIR_ENOMEM ? prc : WEIR_ESPEC;
                goto fail;
            }
        } else if (x->out_kind == WEIR_KIND_ROWS && x->in_kind == WEIR_KIND_ROWS) {
            x->schema = weir_schema_retain(in_schema);
        }
    }
    /* One thread per replica (and per collector): past a few thousand the
     * machine runs out of threads or memory for their stacks, so say so
     * now rather than fail half-started. */
    size_t threads = 0;
    for (size_t i = 0; i < n; i++) {
        const weir_node *x = order[i];
        threads += (size_t)x->replicas + (x->replicas > 1 && x->out_kind != WEIR_KIND_NONE) +
                   (x->def->splitter && x->ninputs == 1);
    }
    if (threads > WEIR__MAX_WORKERS) {
        weir__graph_errorf(g, "the graph needs %zu worker threads (one per stage replica); "
                           "weir runs at most %d: use fewer stages or workers",
                           threads, WEIR__MAX_WORKERS);
        goto fail;
    }
    *order_out = order;
    return 0;
fail:
    free(order);
    return rc;
}

/* ---- stage argument getters ------------------------------------------------------------ */

const weir__arg *weir__stage_arg(const weir_node *n, const char *name,
                                 weir_arg_type t)
{
    for (size_t i = 0; i < n->nargs; i++) {
        const weir__arg *a = &n->args[i];
        if (strcmp(a->def->name, name) != 0) continue;
        if (a->def->type != t && !(t == WEIR_ARG_LIST && a->def->type == WEIR_ARG_COLUMNS)) {
            fprintf(stderr, "weir: bug in stage '%s': argument '%s' is %s, read as %s\n",
                    n->def->name, name, weir_arg_type_name(a->def->type),
                    weir_arg_type_name(t));
            abort();
        }
        return a;
    }
    fprintf(stderr, "weir: bug in stage '%s': no argument '%s' in its table\n",
            n->def->name, name);
    abort();
}
