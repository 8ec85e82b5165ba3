/*
 * registry.c — the stages a spec can name: the built-ins below, then those
 * registered at run time (plugins, tests, programs). Adding a built-in
 * stage: its file, its extern in stages.h, and one line here.
 */
#include "stages.h"

#include <stdlib.h>
#include <string.h>

static const weir_stage_def *const builtins[] = {
    &weir__stage_merge,
    &weir__stage_concat,
};
#define NBUILTIN (sizeof builtins / sizeof *builtins)

/* Built-ins first, then registered ones; rebuilt on each register. */
static const weir_stage_def **all;
static size_t nall;

static void ensure_all(void)
{
    if (all) return;
    all = malloc(NBUILTIN * sizeof *all);
    if (!all) return;
    memcpy(all, builtins, sizeof builtins);
    nall = NBUILTIN;
}

const weir_stage_def *weir_stage_find(const char *name)
{
    const weir_stage_def *const *defs;
    size_t n = weir_stage_list(&defs);
    for (size_t i = 0; i < n; i++)
        if (strcmp(defs[i]->name, name) == 0) return defs[i];
    return NULL;
}

size_t weir_stage_list(const weir_stage_def *const **defs)
{
    ensure_all();
    if (!all) { /* out of memory: the built-ins still work */
        *defs = builtins;
        return NBUILTIN;
    }
    *defs = all;
    return nall;
}

int weir_stage_register(const weir_stage_def *def)
{
    if (!def || def->abi != WEIR_ABI_VERSION || !def->name || !def->process ||
        weir_stage_find(def->name))
        return WEIR_EINVAL;
    ensure_all();
    const weir_stage_def **na = realloc(all, (nall + 1) * sizeof *na);
    if (!na) return WEIR_ENOMEM;
    na[nall++] = def;
    all = na;
    return 0;
}
