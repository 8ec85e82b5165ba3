/*
 * registry.c — the list of built-in stages. Adding a stage: its file, its
 * extern in stages.h, and one line here.
 */
#include "stages.h"

#include <string.h>

static const weir_stage_def *const registry[] = {
    &weir__stage_merge,
    &weir__stage_concat,
};

const weir_stage_def *weir_stage_find(const char *name)
{
    for (size_t i = 0; i < sizeof registry / sizeof *registry; i++)
        if (strcmp(registry[i]->name, name) == 0) return registry[i];
    return NULL;
}

size_t weir_stage_list(const weir_stage_def *const **defs)
{
    *defs = registry;
    return sizeof registry / sizeof *registry;
}
