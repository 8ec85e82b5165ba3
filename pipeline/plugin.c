/*
 * plugin.c — loading stages from a shared object.
 *
 * A plugin is built against weir.h only and NOT linked with libweir: its
 * calls (weir_stage_register, weir_batch_*, …) resolve to the program that
 * loads it, so there is one registry and one copy of the runtime. The
 * weir binary exports its weir_ API for that (-rdynamic).
 */
#include "internal.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

int weir_plugin_load(const char *path, char *err, size_t errsize)
{
    if (err && errsize) err[0] = '\0';
    /* dlopen searches the library path for a bare name; a plugin named in
     * a spec is a file, so make a bare name relative to the directory. */
    char buf[4096];
    if (!strchr(path, '/')) {
        snprintf(buf, sizeof buf, "./%s", path);
        path = buf;
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (h) { /* loaded before (--plugin and load() both name it): done */
        dlclose(h);
        return 0;
    }
    h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        if (err) snprintf(err, errsize, "cannot load plugin: %s", dlerror());
        return WEIR_ENOTFOUND;
    }
    const unsigned *abi = dlsym(h, "weir_plugin_abi");
    int (*init)(void) = (int (*)(void))dlsym(h, "weir_plugin_init");
    int rc = 0;
    if (!abi || !init) {
        if (err)
            snprintf(err, errsize, "%s is not a weir plugin: it does not export %s "
                     "(define it with WEIR_PLUGIN(init) from weir.h)", path,
                     !abi ? "weir_plugin_abi" : "weir_plugin_init");
        rc = WEIR_EINVAL;
    } else if (*abi != WEIR_ABI_VERSION) {
        if (err)
            snprintf(err, errsize, "%s was built for stage ABI %u; this weir (%s) has "
                     "ABI %u: rebuild the plugin against this weir.h", path, *abi,
                     WEIR_VERSION_STRING, WEIR_ABI_VERSION);
        rc = WEIR_EINVAL;
    } else if ((rc = init()) != 0) {
        if (err) snprintf(err, errsize, "%s: weir_plugin_init failed: %s", path,
                          weir_strerror(rc));
        if (rc > 0) rc = WEIR_EINVAL;
    }
    /* A loaded plugin stays loaded: its stage definitions live in it. */
    if (rc) dlclose(h);
    return rc;
}
