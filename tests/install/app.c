/* A program that uses only the installed <weir.h>: a 3-stage pipeline with
 * its own custom stage (upper-casing bytes), run through the graph API. */
#include <weir.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>

static const char text[] = "weir runs pipelines\n";
static int src(weir_stage *s, weir_batch *in) {
    int *sent = weir_stage_state(s);
    if (!sent) { static int once; weir_stage_set_state(s, &once); sent = &once; }
    if (*sent) return WEIR_DONE;
    weir_batch *b;
    if (weir_stage_batch(s, &b)) return WEIR_ENOMEM;
    *sent = 1;
    weir_batch_append(b, text, strlen(text));
    return weir_stage_emit(s, b);
}
static int upper(weir_stage *s, weir_batch *in) {
    for (size_t i = 0; i < in->len; i++) in->data[i] = (unsigned char)toupper(in->data[i]);
    return weir_stage_emit(s, in);
}
static int out(weir_stage *s, weir_batch *in) {
    fwrite(in->data, 1, in->len, stdout);
    weir_batch_release(in);
    return 0;
}
static const weir_arg_def none[] = {{NULL}};
static const weir_stage_def d_src = {WEIR_ABI_VERSION, "src", "", none, WEIR_KIND_NONE, WEIR_KIND_BYTES, 0, NULL, src, NULL, NULL};
static const weir_stage_def d_up = {WEIR_ABI_VERSION, "upper", "", none, WEIR_KIND_BYTES, WEIR_KIND_BYTES, WEIR_STAGE_PARALLEL, NULL, upper, NULL, NULL};
static const weir_stage_def d_out = {WEIR_ABI_VERSION, "out", "", none, WEIR_KIND_BYTES, WEIR_KIND_NONE, 0, NULL, out, NULL, NULL};

int main(void) {
    weir_graph *g; weir_node *a, *b, *c;
    if (weir_graph_create(&g) || weir_graph_add(g, &d_src, NULL, &a) ||
        weir_graph_add(g, &d_up, NULL, &b) || weir_graph_add(g, &d_out, NULL, &c) ||
        weir_graph_connect(g, a, b) || weir_graph_connect(g, b, c)) return 1;
    int rc = weir_graph_run(g, NULL, NULL);
    if (rc) fprintf(stderr, "app: %s\n", weir_graph_errmsg(g));
    weir_graph_destroy(g);
    return rc ? 1 : 0;
}
