/*
 * test_api.c — the library's promises to a program that uses it: the
 * version, the error list, the stage registry (weir_stage_register,
 * weir_stage_find, weir_stage_list) and weir_plugin_load's return codes and
 * one-line reasons. (The CLI side of plugins — load(), --plugin, exit 2 —
 * is in tests/cli/cases_plugins.sh; building and running the examples
 * against an installed weir is tests/examples_test.sh.)
 *
 * The plugin tests build tests/plugins/NAME.c with cc into a temporary
 * folder; they use plugins that call no weir_ function, so this test
 * binary (linked with libweir.a, without -rdynamic) can load them.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weir.h"

/* ---- version and errors ------------------------------------------------------- */

Test(api, version_macros_agree, .timeout = 30)
{
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", WEIR_VERSION_MAJOR, WEIR_VERSION_MINOR,
             WEIR_VERSION_PATCH);
    cr_assert_str_eq(WEIR_VERSION_STRING, want);
    cr_assert_str_eq(weir_version_string(), want);
    cr_assert_eq(weir_version(), (unsigned)(WEIR_VERSION_MAJOR * 10000 +
                                            WEIR_VERSION_MINOR * 100 + WEIR_VERSION_PATCH));
}

Test(api, every_error_code_has_its_name_and_a_message, .timeout = 30)
{
    int n = 0;
#define CHECK(name, value, msg)                                                \
    cr_assert_lt(name, 0);                                                     \
    cr_assert_str_eq(weir_errname(name), #name);                               \
    cr_assert_str_eq(weir_strerror(name), msg);                                \
    n++;
    WEIR_ERRORS(CHECK)
#undef CHECK
    cr_assert_gt(n, 0);
    cr_assert_str_eq(weir_strerror(0), "success");
    cr_assert_str_eq(weir_errname(0), "0");
    cr_assert_str_eq(weir_strerror(-1000), "unknown error");
    cr_assert_str_eq(weir_errname(-1000), "WEIR_E?");
    cr_assert_str_eq(weir_strerror(7), "unknown error");
}

/* ---- the stage registry ----------------------------------------------------------- */

static int pass_process(weir_stage *s, weir_batch *in) { return weir_stage_emit(s, in); }

static const weir_stage_def api_stage = {
    .abi = WEIR_ABI_VERSION,
    .name = "api_pass",
    .summary = "a pass-through registered by test_api",
    .args = (const weir_arg_def[]){{NULL}},
    .in_kind = WEIR_KIND_BYTES,
    .out_kind = WEIR_KIND_BYTES,
    .process = pass_process,
};

Test(api, register_makes_a_stage_known_after_the_builtins, .timeout = 30)
{
    const weir_stage_def *const *defs;
    size_t before = weir_stage_list(&defs);
    cr_assert_gt(before, 0);
    cr_assert_null(weir_stage_find("api_pass"));
    cr_assert_eq(weir_stage_register(&api_stage), 0);
    cr_assert_eq(weir_stage_find("api_pass"), &api_stage);
    size_t after = weir_stage_list(&defs);
    cr_assert_eq(after, before + 1);
    cr_assert_eq(defs[after - 1], &api_stage);
    /* A spec can name it now. */
    weir_graph *g;
    char err[256];
    cr_assert_eq(weir_spec_compile(&g, "read(\"-\") | api_pass() | discard()", 34, NULL,
                                   NULL, err, sizeof err),
                 0, "%s", err);
    weir_graph_destroy(g);
}

Test(api, register_refuses_bad_definitions, .timeout = 30)
{
    weir_stage_def d = api_stage;
    d.abi = WEIR_ABI_VERSION + 1;
    cr_assert_eq(weir_stage_register(&d), WEIR_EINVAL, "another ABI");
    d = api_stage;
    d.process = NULL;
    cr_assert_eq(weir_stage_register(&d), WEIR_EINVAL, "no process callback");
    d = api_stage;
    d.name = NULL;
    cr_assert_eq(weir_stage_register(&d), WEIR_EINVAL, "no name");
    d = api_stage;
    d.name = "csv";
    cr_assert_eq(weir_stage_register(&d), WEIR_EINVAL, "a built-in's name");
    cr_assert_neq(weir_stage_find("csv"), &d, "the built-in stays");
    cr_assert_eq(weir_stage_register(&api_stage), 0);
    cr_assert_eq(weir_stage_register(&api_stage), WEIR_EINVAL, "registered twice");
}

Test(api, graph_add_refuses_another_abi_with_a_message, .timeout = 30)
{
    weir_stage_def d = api_stage;
    d.abi = 999;
    weir_graph *g;
    weir_node *n = (weir_node *)(void *)&d; /* any non-NULL: must be reset to NULL */
    cr_assert_eq(weir_graph_create(&g), 0);
    cr_assert_eq(weir_graph_add(g, &d, NULL, &n), WEIR_EINVAL);
    cr_assert_null(n);
    cr_assert(strstr(weir_graph_errmsg(g), "ABI 999"), "message: %s", weir_graph_errmsg(g));
    weir_graph_destroy(g);
}

/* ---- weir_plugin_load ------------------------------------------------------------- */

static char plugdir[256];

/* Build tests/plugins/NAME.c into plugdir/NAME.so; false if cc cannot. */
static bool build_plugin(const char *name)
{
    if (!plugdir[0]) {
        snprintf(plugdir, sizeof plugdir, "/tmp/weir-test-api-XXXXXX");
        if (!mkdtemp(plugdir)) return false;
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "cc -shared -fPIC -Ipipeline -o %s/%s.so tests/plugins/%s.c 2>/dev/null", plugdir,
             name, name);
    return system(cmd) == 0;
}

static void remove_plugins(void)
{
    if (!plugdir[0]) return;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", plugdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", plugdir);
}

TestSuite(plugin, .fini = remove_plugins);

/* Load plugdir/NAME.so; @return the code, message in err. */
static int load(const char *name, char *err, size_t size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.so", plugdir, name);
    return weir_plugin_load(path, err, size);
}

Test(plugin, missing_file_is_notfound_with_the_reason, .timeout = 30)
{
    char err[512] = "junk";
    cr_assert_eq(weir_plugin_load("/nonexistent/x.so", err, sizeof err), WEIR_ENOTFOUND);
    cr_assert(strncmp(err, "cannot load plugin: /nonexistent/x.so: ", 39) == 0, "%s", err);
    cr_assert(strstr(err, "No such file or directory"), "%s", err);
    cr_assert_null(strchr(err, '\n'), "one line");
}

Test(plugin, a_bare_name_means_the_current_directory, .timeout = 30)
{
    char err[512];
    /* dlopen alone would search the library path for "libc.so.6"; weir
     * looks for ./libc.so.6, which is not there. */
    cr_assert_eq(weir_plugin_load("libc.so.6", err, sizeof err), WEIR_ENOTFOUND);
    cr_assert(strstr(err, "./libc.so.6"), "%s", err);
}

Test(plugin, not_a_shared_object, .timeout = 30)
{
    char path[] = "/tmp/weir-test-api-junk-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "not ELF\n", 8), 8);
    close(fd);
    char err[512];
    int rc = weir_plugin_load(path, err, sizeof err);
    unlink(path);
    cr_assert_eq(rc, WEIR_ENOTFOUND);
    cr_assert(strncmp(err, "cannot load plugin: ", 20) == 0, "%s", err);
}

Test(plugin, no_init_no_abi_and_another_abi_are_einval, .timeout = 60)
{
    if (!build_plugin("noinit") || !build_plugin("noabi") || !build_plugin("badabi"))
        cr_skip_test("cannot build tests/plugins with cc");
    char err[512];
    cr_assert_eq(load("noinit", err, sizeof err), WEIR_EINVAL);
    cr_assert(strstr(err, "noinit.so is not a weir plugin: it does not export "
                          "weir_plugin_init"), "%s", err);
    cr_assert_eq(load("noabi", err, sizeof err), WEIR_EINVAL);
    cr_assert(strstr(err, "noabi.so is not a weir plugin: it does not export "
                          "weir_plugin_abi"), "%s", err);
    cr_assert_eq(load("badabi", err, sizeof err), WEIR_EINVAL);
    char want[128];
    snprintf(want, sizeof want, "was built for stage ABI 999; this weir (%s) has ABI %d",
             WEIR_VERSION_STRING, WEIR_ABI_VERSION);
    cr_assert(strstr(err, want), "%s", err);
    /* No stage appeared. */
    cr_assert_null(weir_stage_find("shout"));
}

Test(plugin, err_may_be_null, .timeout = 30)
{
    cr_assert_eq(weir_plugin_load("/nonexistent/x.so", NULL, 0), WEIR_ENOTFOUND);
    char err[8];
    cr_assert_eq(weir_plugin_load("/nonexistent/x.so", err, sizeof err), WEIR_ENOTFOUND);
    cr_assert_eq(strlen(err), sizeof err - 1, "cut to the buffer");
}
