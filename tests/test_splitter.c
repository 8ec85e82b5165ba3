/*
 * test_splitter.c — a stage with a splitter: the runtime runs the splitter on
 * one thread in front of the replicas, which then see whole units only.
 */
#include <criterion/criterion.h>

#include "harness.h"

/* ---- splitter: a node whose input is cut at unit boundaries ------------------ */

/* The splitter cuts bytes at the last '\n' of what it has, carrying the
 * rest; the replicas count lines in whole-line chunks and emit "N\n". */
typedef struct sp_state {
    char carry[4096];
    size_t ncarry;
} sp_state;

static int sp_open(weir_stage *s)
{
    weir_stage_set_state(s, calloc(1, sizeof(sp_state)));
    return weir_stage_state(s) ? 0 : WEIR_ENOMEM;
}

static int sp_emit_upto(weir_stage *s, const unsigned char *p, size_t n)
{
    weir_batch *b;
    int rc = weir_stage_batch(s, &b);
    if (rc) return rc;
    rc = weir_batch_append(b, p, n);
    if (rc) {
        weir_batch_release(b);
        return rc;
    }
    return weir_stage_emit(s, b);
}

static int sp_process(weir_stage *s, weir_batch *in)
{
    sp_state *st = weir_stage_state(s);
    unsigned char buf[8192];
    size_t n = st->ncarry;
    memcpy(buf, st->carry, n);
    memcpy(buf + n, in->data, in->len);
    n += in->len;
    weir_batch_release(in);
    size_t cut = n;
    while (cut > 0 && buf[cut - 1] != '\n') cut--;
    st->ncarry = n - cut;
    memcpy(st->carry, buf + cut, st->ncarry);
    return cut ? sp_emit_upto(s, buf, cut) : 0;
}

static int sp_finish(weir_stage *s)
{
    sp_state *st = weir_stage_state(s);
    return st->ncarry ? sp_emit_upto(s, (unsigned char *)st->carry, st->ncarry) : 0;
}

static void sp_close(weir_stage *s) { free(weir_stage_state(s)); }

static const weir_stage_def sp_split_def = {
    .abi = WEIR_ABI_VERSION, .name = "lines_split", .summary = "cut at line ends",
    .in_kind = WEIR_KIND_BYTES, .out_kind = WEIR_KIND_BYTES,
    .open = sp_open, .process = sp_process, .finish = sp_finish, .close = sp_close};

/* Each chunk must be whole lines: emit its lines reversed, so a cut line
 * would show as garbage in the output. */
static int sp_lines_process(weir_stage *s, weir_batch *in)
{
    cr_assert(in->len > 0 && in->data[in->len - 1] == '\n',
              "a chunk does not end on a line boundary");
    weir_batch *b;
    int rc = weir_stage_batch(s, &b);
    if (rc) return rc;
    size_t start = 0;
    for (size_t i = 0; i < in->len; i++) {
        if (in->data[i] != '\n') continue;
        for (size_t k = i; k-- > start;) weir_batch_append(b, &in->data[k], 1);
        weir_batch_append(b, "\n", 1);
        start = i + 1;
    }
    weir_batch_release(in);
    return weir_stage_emit(s, b);
}

static const weir_stage_def sp_lines_def = {
    .abi = WEIR_ABI_VERSION, .name = "rev_lines", .summary = "reverse each line",
    .args = (const weir_arg_def[]){{NULL}},
    .in_kind = WEIR_KIND_BYTES, .out_kind = WEIR_KIND_BYTES,
    .flags = WEIR_STAGE_PARALLEL, .process = sp_lines_process,
    .splitter = &sp_split_def};

Test(splitter, cuts_units_for_replicas, .timeout = 20)
{
    /* Lines of varied length, sent in 7-byte pieces: most pieces cut a line. */
    char text[20000];
    size_t n = 0;
    for (int i = 0; n < sizeof text - 64; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "line-%d-%.*s\n", i, i % 23,
                              "abcdefghijklmnopqrstuvwxyz");
    char want[20000];
    size_t start = 0, w = 0;
    for (size_t i = 0; i < n; i++) {
        if (text[i] != '\n') continue;
        for (size_t k = i; k-- > start;) want[w++] = text[k];
        want[w++] = '\n';
        start = i + 1;
    }
    weir_stage_register(&h_src_def);
    weir_stage_register(&h_sink_def);
    weir_graph *g;
    weir_node *src, *rev, *sink;
    cr_assert_eq(weir_graph_create(&g), 0);
    cr_assert_eq(weir_graph_add(g, &h_src_def, NULL, &src), 0);
    text[n] = '\0';
    cr_assert_eq(weir_node_set_str(src, "text", text), 0);
    cr_assert_eq(weir_node_set_int(src, "chunk", 7), 0);
    cr_assert_eq(weir_graph_add(g, &sp_lines_def, NULL, &rev), 0);
    cr_assert_eq(weir_node_set_int(rev, "workers", 3), 0);
    cr_assert_eq(weir_graph_add(g, &h_sink_def, NULL, &sink), 0);
    cr_assert_eq(weir_graph_connect(g, src, rev), 0);
    cr_assert_eq(weir_graph_connect(g, rev, sink), 0);
    h_len = 0;
    cr_assert_eq(weir_graph_run(g, NULL, NULL), 0, "%s", weir_graph_errmsg(g));
    cr_assert_eq(h_len, w);
    cr_assert(memcmp(h_buf, want, w) == 0, "reversed lines out of order or cut");
    weir_node_stats st;
    cr_assert_eq(weir_node_replica_stats(rev, -1, &st), 0, "the splitter has counters");
    cr_assert_eq(st.bytes_in, n);
    char plan[2048];
    weir_graph_describe(g, NULL, plan, sizeof plan);
    cr_assert(strstr(plan, "input cut by lines_split"), "%s", plan);
    weir_graph_destroy(g);
}
