/*
 * chancap.c — run a one-liner spec with another channel capacity
 * (weir_run_opts.chan_capacity; the CLI has no flag for it): for
 * bench/peers.sh, to show what edge capacity does to peak RSS.
 *
 *   chancap CAPACITY 'read("x.csv") | csv() | count()'
 *
 * Prints "cap N: rc R S s KB" (wall seconds, peak RSS) on stderr.
 */
#include <weir.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
int main(int argc, char **argv) {
    weir_graph *g; char err[512];
    if (weir_spec_compile(&g, argv[2], strlen(argv[2]), "<e>", &(weir_spec_opts){.oneliner = true}, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 2; }
    weir_run_opts o = {.chan_capacity = (size_t)atoi(argv[1])};
    uint64_t t0 = weir_now_ns();
    int rc = weir_graph_run(g, NULL, &o);
    double s = (weir_now_ns() - t0) / 1e9;
    struct rusage ru; getrusage(RUSAGE_SELF, &ru);
    fprintf(stderr, "cap %s: rc %d %.2f s %ld KB\n", argv[1], rc, s, ru.ru_maxrss);
    return rc != 0;
}
