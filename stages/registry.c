/*
 * registry.c — the stages a spec can name: the built-ins below, then those
 * registered at run time (plugins, tests, programs). Adding a built-in
 * stage: its file, its extern in stages.h, and one line here.
 */
#include "stages.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* In the order `weir stages` lists them: sources, parsers and formatters,
 * transforms, sinks, fan-in. */
static const weir_stage_def *const builtins[] = {
    &weir__stage_read,    &weir__stage_gen,     &weir__stage_csv,
    &weir__stage_to_csv,  &weir__stage_to_jsonl, &weir__stage_zstd,
    &weir__stage_unzstd,  &weir__stage_filter,  &weir__stage_select,
    &weir__stage_drop,    &weir__stage_rename,  &weir__stage_compute,
    &weir__stage_head,    &weir__stage_sample,  &weir__stage_group,
    &weir__stage_sort,    &weir__stage_dedup,
    &weir__stage_write,   &weir__stage_split,
    &weir__stage_discard, &weir__stage_count,   &weir__stage_merge,
    &weir__stage_concat,
};
#define NBUILTIN (sizeof builtins / sizeof *builtins)

/* Built-ins first, then registered ones; rebuilt on each register. */
static const weir_stage_def **all;
static size_t nall;

static void build_all(void)
{
    all = malloc(NBUILTIN * sizeof *all);
    if (!all) return;
    for (size_t i = 0; i < NBUILTIN; i++)
        all[nall++] = builtins[i];
}

/* Built once, whichever thread looks first. (Registering stays the
 * caller's to serialise, as weir.h says.) */
static void ensure_all(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, build_all);
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
    *defs = all;
    return all ? nall : 0;
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
