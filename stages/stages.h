/*
 * stages.h — the built-in stages' definitions, for the registry.
 * A built-in stage includes only weir.h (the API any user's stage gets).
 */
#ifndef WEIR_STAGES_H
#define WEIR_STAGES_H

#include "weir.h"

extern const weir_stage_def weir__stage_merge;
extern const weir_stage_def weir__stage_concat;

#endif
