/*
 * harness.h — drive stages from outside, the way a spec does, with two
 * test-only stages:
 *
 *   h_src(text, chunk=N)   bytes source: emits `text` in chunks of N bytes
 *                          (N small → records straddle batch boundaries)
 *   h_rows(text)           rows source: lines of `text` are rows, fields
 *                          split on '|', the first line is the header
 *   h_sink()               sink: bytes are appended as they are; rows are
 *                          appended as "f1|f2|…\n" (header line first)
 *
 * h_run("h_src(text=$in, chunk=7) | csv() | h_sink()", "in=a,b\n1,2\n", &r)
 * compiles the spec with the given --var strings, runs it, and fills r:
 * rc (the run's or compile's code), out (what h_sink got), err (message).
 * Header-only: each test file includes it once.
 */
#ifndef WEIR_TEST_HARNESS_H
#define WEIR_TEST_HARNESS_H

#include <weir.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct h_result {
    int rc;
    char *out;   /* malloc'd, NUL-terminated (may hold NULs: use len) */
    size_t len;
    char err[2048];
} h_result;

/* The sink appends here; a run at a time. */
static pthread_mutex_t h_mu = PTHREAD_MUTEX_INITIALIZER;
static char *h_buf;
static size_t h_len, h_cap;
static __attribute__((unused)) int h_header_done;

static __attribute__((unused)) void h_append(const void *p, size_t n)
{
    pthread_mutex_lock(&h_mu);
    if (h_len + n + 1 > h_cap) {
        size_t cap = h_cap ? h_cap : 4096;
        while (h_len + n + 1 > cap) cap *= 2;
        h_buf = realloc(h_buf, cap);
        h_cap = cap;
    }
    memcpy(h_buf + h_len, p, n);
    h_len += n;
    h_buf[h_len] = '\0';
    pthread_mutex_unlock(&h_mu);
}

/* ---- h_src ------------------------------------------------------------------------------ */

typedef struct h_src_state {
    const char *text;
    size_t len, off, chunk;
} h_src_state;

static __attribute__((unused)) int h_src_open(weir_stage *s)
{
    h_src_state *st = calloc(1, sizeof *st);
    if (!st) return WEIR_ENOMEM;
    st->text = weir_stage_arg_str(s, "text");
    st->len = strlen(st->text);
    st->chunk = (size_t)weir_stage_arg_int(s, "chunk");
    if (st->chunk == 0) st->chunk = 1;
    weir_stage_set_state(s, st);
    return 0;
}

static __attribute__((unused)) int h_src_process(weir_stage *s, weir_batch *in)
{
    (void)in;
    h_src_state *st = weir_stage_state(s);
    if (st->off >= st->len) return WEIR_DONE;
    size_t n = st->len - st->off < st->chunk ? st->len - st->off : st->chunk;
    weir_batch *b;
    int rc = weir_stage_batch(s, &b);
    if (rc) return rc;
    if ((rc = weir_batch_append(b, st->text + st->off, n))) {
        weir_batch_release(b);
        return rc;
    }
    st->off += n;
    return weir_stage_emit(s, b);
}

static __attribute__((unused)) long h_src_peek(weir_stage *s, void *buf, size_t size)
{
    const char *t = weir_stage_arg_str(s, "text");
    size_t n = strlen(t) < size ? strlen(t) : size;
    memcpy(buf, t, n);
    return (long)n;
}

static __attribute__((unused)) void h_free_state(weir_stage *s) { free(weir_stage_state(s)); }

static const weir_stage_def h_src_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "h_src",
    .summary = "test: bytes from text, in chunks",
    .args = (const weir_arg_def[]){{"text", WEIR_ARG_STRING, NULL, "the bytes"},
                                   {"chunk", WEIR_ARG_INT, "65536", "bytes per batch"},
                                   {NULL}},
    .in_kind = WEIR_KIND_NONE,
    .out_kind = WEIR_KIND_BYTES,
    .open = h_src_open,
    .process = h_src_process,
    .close = h_free_state,
    .peek = h_src_peek,
};

/* ---- h_rows ------------------------------------------------------------------------------- */

typedef struct h_rows_state {
    char *text;
    weir_schema *schema;
    bool done;
} h_rows_state;

/* Split text's first line on '|' into a schema. */
static __attribute__((unused)) int h_rows_schema(const char *text, weir_schema **out)
{
    const char *nl = strchr(text, '\n');
    size_t hl = nl ? (size_t)(nl - text) : strlen(text);
    char *h = strndup(text, hl);
    const char *names[256];
    size_t n = 0;
    for (char *p = h, *f; (f = strsep(&p, "|")) && n < 256;) names[n++] = f;
    int rc = weir_schema_create(out, names, n);
    free(h);
    return rc;
}

static __attribute__((unused)) int h_rows_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    (void)in;
    return h_rows_schema(weir_stage_arg_str(s, "text"), out);
}

static __attribute__((unused)) int h_rows_open(weir_stage *s)
{
    h_rows_state *st = calloc(1, sizeof *st);
    if (!st) return WEIR_ENOMEM;
    weir_stage_set_state(s, st);
    st->text = strdup(weir_stage_arg_str(s, "text"));
    return h_rows_schema(st->text, &st->schema);
}

static __attribute__((unused)) int h_rows_process(weir_stage *s, weir_batch *in)
{
    (void)in;
    h_rows_state *st = weir_stage_state(s);
    if (st->done) return WEIR_DONE;
    st->done = true;
    weir_batch *b;
    int rc = weir_stage_batch(s, &b);
    if (rc) return rc;
    weir_batch_set_schema(b, st->schema);
    char *p = strchr(st->text, '\n');
    p = p ? p + 1 : st->text + strlen(st->text);
    while (*p && rc == 0) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        for (char *q = p, *f; rc == 0 && (f = strsep(&q, "|"));)
            rc = weir_batch_add_field(b, f, strlen(f));
        if (rc == 0) rc = weir_batch_end_row(b);
        p = nl ? nl + 1 : p + strlen(p);
    }
    if (rc) {
        weir_batch_release(b);
        return rc;
    }
    return weir_stage_emit(s, b);
}

static __attribute__((unused)) void h_rows_close(weir_stage *s)
{
    h_rows_state *st = weir_stage_state(s);
    if (!st) return;
    weir_schema_release(st->schema);
    free(st->text);
    free(st);
}

static const weir_stage_def h_rows_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "h_rows",
    .summary = "test: rows from '|'-separated lines, header first",
    .args = (const weir_arg_def[]){{"text", WEIR_ARG_STRING, NULL, "the rows"}, {NULL}},
    .in_kind = WEIR_KIND_NONE,
    .out_kind = WEIR_KIND_ROWS,
    .open = h_rows_open,
    .process = h_rows_process,
    .close = h_rows_close,
    .plan = h_rows_plan,
};

/* ---- h_sink ------------------------------------------------------------------------------- */

static __attribute__((unused)) int h_sink_process(weir_stage *s, weir_batch *in)
{
    (void)s;
    if (in->kind == WEIR_KIND_BYTES) {
        h_append(in->data, in->len);
    } else {
        if (!h_header_done && in->schema) {
            h_header_done = 1;
            for (size_t c = 0; c < weir_schema_ncols(in->schema); c++) {
                if (c) h_append("|", 1);
                const char *nm = weir_schema_name(in->schema, c);
                h_append(nm, strlen(nm));
            }
            h_append("\n", 1);
        }
        for (uint32_t r = 0; r < in->nrows; r++) {
            for (uint32_t c = 0; c < in->ncols; c++) {
                size_t len;
                const unsigned char *f = weir_batch_field(in, r, c, &len);
                if (c) h_append("|", 1);
                h_append(f, len);
            }
            h_append("\n", 1);
        }
    }
    weir_batch_release(in);
    return 0;
}

static const weir_stage_def h_sink_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "h_sink",
    .summary = "test: capture bytes, or rows as '|'-separated lines",
    .args = (const weir_arg_def[]){{NULL}},
    .in_kind = WEIR_KIND_ANY,
    .out_kind = WEIR_KIND_NONE,
    .process = h_sink_process,
};

/* ---- running ---------------------------------------------------------------------------------- */

static __attribute__((unused)) void h_register(void)
{
    static int done;
    if (done) return;
    done = 1;
    weir_stage_register(&h_src_def);
    weir_stage_register(&h_rows_def);
    weir_stage_register(&h_sink_def);
}

/* Compile and run spec with `nvars` "k=v" strings. r->out is what h_sink
 * captured; free it with h_free(). @return r->rc. */
static __attribute__((unused)) int h_runv(const char *spec, const char *const *vars, size_t nvars, h_result *r)
{
    h_register();
    memset(r, 0, sizeof *r);
    h_len = 0;
    h_header_done = 0;
    weir_spec_opts o = {.vars = vars, .nvars = nvars};
    weir_graph *g;
    r->rc = weir_spec_compile(&g, spec, strlen(spec), "<test>", &o, r->err, sizeof r->err);
    if (r->rc == 0) {
        r->rc = weir_graph_run(g, NULL, NULL);
        if (r->rc) snprintf(r->err, sizeof r->err, "%s", weir_graph_errmsg(g));
        weir_graph_destroy(g);
    }
    r->out = malloc(h_len + 1);
    memcpy(r->out, h_buf ? h_buf : "", h_len);
    r->out[h_len] = '\0';
    r->len = h_len;
    return r->rc;
}

/* One --var "in=<input>" and the spec. */
static __attribute__((unused)) int h_run(const char *spec, const char *input, h_result *r)
{
    char *var = malloc(strlen(input) + 4);
    strcpy(var, "in=");
    strcat(var, input);
    const char *vars[] = {var};
    int rc = h_runv(spec, vars, 1, r);
    free(var);
    return rc;
}

static __attribute__((unused)) void h_free(h_result *r)
{
    free(r->out);
    r->out = NULL;
}

#endif
