/*
 * fuzz_spec.c — the spec compiler: weir_spec_compile() on arbitrary bytes
 * (as a -e one-liner and as a file), and on success weir_graph_check()
 * (structure, kinds, arguments, every stage's plan()) and the two
 * descriptions of the physical graph. Nothing runs.
 *
 * Required: no crash, no sanitizer report, no leak, no hang; an error is
 * WEIR_ESPEC (or WEIR_ENOMEM) with a message that starts with the file
 * name and a position, as the CLI prints it.
 *
 * Two things a spec can do are kept out, because they reach beyond the
 * parser into the machine: load("x.so") (dlopen of whatever file the
 * input names) and, at check time, read() of an absolute path or a glob
 * (a plan() peeks into the file: /proc/kmsg would block, "/ * / *" walks
 * the disk). Such inputs are still compiled when they do not load.
 * A relative name is looked up in the current directory, where at worst
 * a file's first bytes are read.
 */
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_register();
    return 0;
}

static bool has(const uint8_t *d, size_t n, const char *s)
{
    return memmem(d, n, s, strlen(s)) != NULL;
}

static void compile_one(const uint8_t *data, size_t size, bool oneliner, bool may_check)
{
    static const char *const vars[] = {"input=in.csv", "out=out.csv", "n=3"};
    weir_spec_opts o = {.vars = vars, .nvars = 3, .oneliner = oneliner};
    const char *file = oneliner ? "<expr>" : "spec.weir";
    char err[2048];
    weir_graph *g = NULL;
    int rc = weir_spec_compile(&g, (const char *)data, size, file, &o, err, sizeof err);
    if (rc) {
        FZ_CHECK(rc == WEIR_ESPEC || rc == WEIR_ENOMEM, "compile returned %d", rc);
        FZ_CHECK(g == NULL || rc == WEIR_ENOMEM, "a failed compile returned a graph");
        FZ_CHECK(rc != WEIR_ESPEC || strncmp(err, file, strlen(file)) == 0,
                 "the message does not start with the file: '%s'", err);
        return;
    }
    FZ_CHECK(g != NULL, "compile succeeded without a graph");
    if (may_check) {
        weir_run_opts ro = {.max_workers = 2};
        rc = weir_graph_check(g, &ro);
        FZ_CHECK(rc == 0 || rc == WEIR_ESPEC || rc == WEIR_ENOMEM || rc == WEIR_ELIMIT,
                 "check returned %d: %s", rc, weir_graph_errmsg(g));
        if (rc == 0) {
            char buf[512];
            size_t need = weir_graph_describe(g, &ro, buf, sizeof buf);
            FZ_CHECK(need > 0, "describe wrote nothing");
            char *big = malloc(need + 1);
            if (!big) abort();
            FZ_CHECK(weir_graph_describe(g, &ro, big, need + 1) == need,
                     "describe's length changed between calls");
            FZ_CHECK(strlen(big) == need, "describe's text is not its length");
            free(big);
            (void)weir_graph_dot(g, &ro, buf, sizeof buf);
        }
    }
    weir_graph_destroy(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (has(data, size, "load")) return 0;
    bool may_check = !(has(data, size, "read") && (has(data, size, "/") ||
                                                   has(data, size, "*") ||
                                                   has(data, size, "?") ||
                                                   has(data, size, "[")));
    compile_one(data, size, true, may_check);
    compile_one(data, size, false, may_check);
    return 0;
}
