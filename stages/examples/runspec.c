/*
 * runspec.c — run a spec from a C program: compile the text with
 * weir_spec_compile, load plugins with weir_plugin_load, run the graph
 * under a context with a timeout, and print what each stage did.
 *
 *   cc -o runspec runspec.c $(pkg-config --cflags --libs weir)
 *   ./runspec [-p PLUGIN.so]... [-t SECONDS] 'SPEC'
 *   ./runspec -p ./collatz.so 'numbers(count=1000) | collatz(n) | filter(steps > 150)'
 *
 * As with `weir run -e`, a last chain without a sink writes CSV to stdout.
 * Per-stage counters go to stderr. A plugin calls weir_ functions that the
 * program must provide to it: linking libweir dynamically (-lweir, as
 * pkg-config says) does that. A program linked with libweir.a must export
 * all of them instead: -rdynamic -Wl,--whole-archive libweir.a
 * -Wl,--no-whole-archive.
 */
#include <weir.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void)
{
    fprintf(stderr, "usage: runspec [-p PLUGIN.so]... [-t SECONDS] 'SPEC'\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *spec = NULL;
    double timeout = 0;
    char err[1024];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-p") == 0 && i + 1 < argc) {
            /* Loading runs the plugin's init, which registers its stages:
             * specs compiled from now on can name them. */
            if (weir_plugin_load(argv[++i], err, sizeof err) != 0) {
                fprintf(stderr, "runspec: %s\n", err);
                return 2;
            }
        } else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) {
            timeout = atof(argv[++i]);
        } else if (argv[i][0] == '-' || spec) {
            return usage();
        } else {
            spec = argv[i];
        }
    }
    if (!spec) return usage();

    weir_spec_opts opts = {.oneliner = true};
    weir_graph *g;
    if (weir_spec_compile(&g, spec, strlen(spec), "<spec>", &opts, err, sizeof err)) {
        fprintf(stderr, "runspec: %s\n", err); /* "<spec>:1:7: unknown stage 'x' …" */
        return 2;
    }
    /* The root of this run's cancellation: a deadline, or none. */
    weir_ctx *ctx;
    int rc = timeout > 0 ? weir_ctx_create_timeout(&ctx, NULL, (uint64_t)(timeout * 1e9))
                         : weir_ctx_create(&ctx, NULL);
    if (rc) {
        fprintf(stderr, "runspec: %s\n", weir_strerror(rc));
        weir_graph_destroy(g);
        return 1;
    }
    rc = weir_graph_run(g, ctx, NULL); /* blocks until every stage has ended */
    fflush(stdout);
    if (rc) fprintf(stderr, "runspec: %s (%s)\n", weir_graph_errmsg(g), weir_errname(rc));

    /* Counters stay readable after the run. */
    weir_node *const *nodes;
    size_t n = weir_graph_nodes(g, &nodes);
    for (size_t i = 0; i < n; i++) {
        weir_node_stats st;
        weir_node_get_stats(nodes[i], &st);
        fprintf(stderr, "  %-10s %d replica%s, %" PRIu64 " rows in, %" PRIu64 " rows out\n",
                weir_node_label(nodes[i]), st.replicas, st.replicas == 1 ? "" : "s",
                st.rows_in, st.rows_out);
    }
    weir_graph_destroy(g);
    weir_ctx_destroy(ctx);
    return rc == 0 ? 0 : rc == WEIR_ESPEC ? 2 : 1;
}
